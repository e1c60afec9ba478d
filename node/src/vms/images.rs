//! The image store: `<data-dir>/images/<name>`, one file per bootable image.
//!
//! Every node registers the Kiln test guest as [`TEST_GUEST_IMAGE`] at start, copying it into
//! the store when it is missing or differs, so a VM keeps its image even if the package that
//! shipped it is upgraded underneath.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use kiln_node_client::wire::{ImageInfo, TEST_GUEST_IMAGE};

/// Longest image name.
const IMAGE_NAME_MAX: usize = 64;
/// ELF magic.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// Why an image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The name cannot be an image name.
    #[error("invalid image name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'")]
    InvalidName(String),
    /// No such image in the store.
    #[error("image {name:?} is not in this node's image store ({}); available: {}", dir.display(), if available.is_empty() { "none".to_owned() } else { available.join(", ") })]
    Missing {
        /// The name asked for.
        name: String,
        /// The store.
        dir: PathBuf,
        /// What the store holds.
        available: Vec<String>,
    },
    /// The store cannot be read or written.
    #[error("image store {}: cannot {action}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Checks an image name: it becomes a file name, so no path separators or leading dots.
pub fn check_image_name(name: &str) -> Result<(), ImageError> {
    let valid = !name.is_empty()
        && name.len() <= IMAGE_NAME_MAX
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ImageError::InvalidName(name.to_owned()))
    }
}

/// The image store of a node. Blocking (`std::fs`): call from `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// The store at `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        ImageStore { dir }
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError {
        let path = path.to_owned();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }

    /// Every image in the store, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("list", &self.dir)(e)),
        };
        let mut images = Vec::new();
        for entry in entries {
            let entry = entry.map_err(self.io("list", &self.dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if check_image_name(&name).is_err() {
                continue; // temporary copies and foreign files
            }
            let path = entry.path();
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            images.push(ImageInfo {
                kind: image_kind(&path).to_owned(),
                description: describe(&name),
                size_bytes: meta.len(),
                name,
            });
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(images)
    }

    /// The path of image `name`, which must exist.
    pub fn path_of(&self, name: &str) -> Result<PathBuf, ImageError> {
        check_image_name(name)?;
        let path = self.dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
        Err(ImageError::Missing {
            name: name.to_owned(),
            dir: self.dir.clone(),
            available: self
                .list()
                .unwrap_or_default()
                .into_iter()
                .map(|i| i.name)
                .collect(),
        })
    }

    /// Copies `source` into the store as `name` unless an identical copy is there already.
    /// Returns whether it copied.
    pub fn register(&self, name: &str, source: &Path) -> Result<bool, ImageError> {
        check_image_name(name)?;
        fs::create_dir_all(&self.dir).map_err(self.io("create", &self.dir))?;
        let target = self.dir.join(name);
        if same_contents(source, &target).map_err(self.io("read", source))? {
            return Ok(false);
        }
        let temp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        fs::copy(source, &temp).map_err(self.io("copy", source))?;
        fs::rename(&temp, &target).map_err(|e| {
            let _ = fs::remove_file(&temp);
            self.io("write", &target)(e)
        })?;
        Ok(true)
    }
}

/// Where the test guest comes from: the path given (flag or environment), else the package's
/// location, else next to the running executable.
pub fn find_test_guest(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_owned());
    }
    let packaged = PathBuf::from("/usr/share/kiln").join(TEST_GUEST_IMAGE);
    if packaged.is_file() {
        return Some(packaged);
    }
    let beside = std::env::current_exe()
        .ok()?
        .parent()?
        .join(TEST_GUEST_IMAGE);
    beside.is_file().then_some(beside)
}

/// `pvh-elf` for an ELF file (kiln-vmm boots ELF images through their PVH note), else
/// `unknown`.
fn image_kind(path: &Path) -> &'static str {
    let mut magic = [0u8; 4];
    let is_elf = fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == ELF_MAGIC;
    if is_elf {
        "pvh-elf"
    } else {
        "unknown"
    }
}

fn describe(name: &str) -> String {
    if name == TEST_GUEST_IMAGE {
        "Kiln test guest: serial shell, timer and memory tests (no_std PVH ELF)".to_owned()
    } else {
        "PVH ELF kernel image".to_owned()
    }
}

/// Whether `a` and `b` hold the same bytes (`false` if `b` does not exist).
fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    let meta_a = fs::metadata(a)?;
    match fs::metadata(b) {
        Ok(meta_b) if meta_b.len() == meta_a.len() => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    Ok(fs::read(a)? == fs::read(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_cannot_leave_the_store() {
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(check_image_name(bad).is_err(), "{bad:?}");
        }
        for good in ["kiln-test-guest", "vmlinux-6.1.0_amd64.elf"] {
            assert!(check_image_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn registering_copies_once_and_lists_the_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("guest");
        std::fs::write(&source, b"\x7fELFpayload").expect("write");
        let store = ImageStore::new(dir.path().join("images"));
        assert!(store.register(TEST_GUEST_IMAGE, &source).expect("first"));
        assert!(!store.register(TEST_GUEST_IMAGE, &source).expect("again"));
        std::fs::write(&source, b"\x7fELFnewer payload").expect("write");
        assert!(store.register(TEST_GUEST_IMAGE, &source).expect("changed"));
        let images = store.list().expect("list");
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].name, TEST_GUEST_IMAGE);
        assert_eq!(images[0].kind, "pvh-elf");
        assert_eq!(images[0].size_bytes, 17);
    }

    #[test]
    fn a_missing_image_names_what_is_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::new(dir.path().to_owned());
        std::fs::write(dir.path().join("other"), b"x").expect("write");
        let err = store.path_of("nope").expect_err("missing");
        assert!(err.to_string().contains("available: other"), "{err}");
    }
}
