//! The image store: `<data-dir>/images/<name>`, one entry per bootable image.
//!
//! An image is either a single file (an ELF booted through its PVH note, such as the Kiln
//! test guest) or a directory holding a Linux kernel, an initramfs and [`MANIFEST`]
//! (`image.json`, see [`ImageManifest`]), as `make guest-linux` writes them.
//!
//! Every node registers the Kiln test guest as [`TEST_GUEST_IMAGE`] at start, and imports the
//! image directories it is pointed at (`--image-dir`), copying them into the store when they
//! are missing or differ, so a VM keeps its image even if what shipped it changes underneath.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_node_client::wire::{ImageInfo, TEST_GUEST_IMAGE};
use serde::Deserialize;

/// Longest image name.
const IMAGE_NAME_MAX: usize = 64;
/// ELF magic.
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// The file that describes a directory image.
pub const MANIFEST: &str = "image.json";
/// The kind of a directory image: a Linux kernel with an initramfs.
pub const LINUX_KIND: &str = "linux";
/// A human-readable copy of the default command line that `make guest-linux` writes beside
/// the manifest; imported with the image when present (the manifest is what counts).
const CMDLINE_FILE: &str = "cmdline";
/// Longest kernel command line (as for [`kiln_node_client::wire::VmSpec::cmdline`]).
const CMDLINE_MAX: usize = 4096;

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
    /// An image directory's manifest is unusable.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The manifest (`…/image.json`).
        path: PathBuf,
        /// What is wrong with it, for a human.
        problem: String,
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

/// `image.json` of a directory image (file names relative to the directory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageManifest {
    /// The image name; in the store, also the directory's name.
    pub name: String,
    /// Only [`LINUX_KIND`] so far.
    pub kind: String,
    /// What it is, for a human.
    #[serde(default)]
    pub description: Option<String>,
    /// The kernel (bzImage or vmlinux), a file in the image directory.
    pub kernel: String,
    /// The initramfs, a file in the image directory.
    pub initrd: String,
    /// The default kernel command line (a VM's own `cmdline` replaces it).
    #[serde(default)]
    pub cmdline: Option<String>,
    /// The least memory a VM of this image may have, in MiB.
    #[serde(default)]
    pub min_memory_mib: Option<u32>,
}

/// A checked directory image.
#[derive(Debug, Clone)]
struct DirImage {
    dir: PathBuf,
    manifest: ImageManifest,
    /// Kernel plus initrd, in bytes.
    size_bytes: u64,
}

impl DirImage {
    /// Reads and checks `<dir>/image.json` and the files it names; the error says what is
    /// wrong (without the path, which the caller adds).
    fn read(dir: &Path) -> Result<DirImage, String> {
        let path = dir.join(MANIFEST);
        let text = fs::read_to_string(&path).map_err(|e| format!("cannot read it: {e}"))?;
        let manifest: ImageManifest =
            serde_json::from_str(&text).map_err(|e| format!("not a valid image manifest: {e}"))?;
        if manifest.kind != LINUX_KIND {
            return Err(format!(
                "kind {:?} is not supported in an image directory (only {LINUX_KIND:?})",
                manifest.kind
            ));
        }
        check_image_name(&manifest.name).map_err(|e| e.to_string())?;
        if let Some(cmdline) = &manifest.cmdline {
            if cmdline.len() > CMDLINE_MAX || cmdline.contains('\0') {
                return Err(format!(
                    "cmdline must be at most {CMDLINE_MAX} bytes without NUL characters"
                ));
            }
        }
        if manifest.min_memory_mib == Some(0) {
            return Err("min_memory_mib must be at least 1 (or left out)".to_owned());
        }
        let mut size_bytes = 0u64;
        for (field, file) in [("kernel", &manifest.kernel), ("initrd", &manifest.initrd)] {
            if file.is_empty() || file.contains('/') || file == "." || file == ".." {
                return Err(format!(
                    "{field} must name a file in the image directory, not {file:?}"
                ));
            }
            match fs::metadata(dir.join(file)) {
                Ok(meta) if meta.is_file() => size_bytes = size_bytes.saturating_add(meta.len()),
                Ok(_) => return Err(format!("{field} file {file:?} is not a regular file")),
                Err(e) => return Err(format!("{field} file {file:?}: {e}")),
            }
        }
        Ok(DirImage {
            dir: dir.to_owned(),
            manifest,
            size_bytes,
        })
    }

    /// The files that make up the image, relative to its directory.
    fn files(&self) -> Vec<String> {
        let mut files = vec![
            MANIFEST.to_owned(),
            self.manifest.kernel.clone(),
            self.manifest.initrd.clone(),
        ];
        if !files.iter().any(|f| f == CMDLINE_FILE) && self.dir.join(CMDLINE_FILE).is_file() {
            files.push(CMDLINE_FILE.to_owned());
        }
        files.dedup();
        files
    }

    fn info(&self) -> ImageInfo {
        let m = &self.manifest;
        ImageInfo {
            name: m.name.clone(),
            size_bytes: self.size_bytes,
            kind: LINUX_KIND.to_owned(),
            description: m
                .description
                .clone()
                .unwrap_or_else(|| "Linux kernel with an initramfs".to_owned()),
        }
    }
}

/// What kiln-vmm boots for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootImage {
    /// One ELF file with a PVH entry note (e.g. the Kiln test guest).
    Pvh(PathBuf),
    /// A Linux kernel with an initramfs (`kiln-vmm --boot linux`).
    Linux {
        /// The kernel (bzImage or vmlinux).
        kernel: PathBuf,
        /// The initramfs.
        initrd: PathBuf,
        /// The image's default command line (a VM's own replaces it).
        cmdline: Option<String>,
        /// The least memory a VM of this image may have.
        min_memory_mib: Option<u32>,
    },
}

impl BootImage {
    /// The file kiln-vmm is given as `--kernel`.
    pub fn kernel(&self) -> &Path {
        match self {
            BootImage::Pvh(path) => path,
            BootImage::Linux { kernel, .. } => kernel,
        }
    }
}

/// The image store of a node. Blocking (`std::fs`): call from `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    /// Problems with the store's directory images already logged, so that listing the store
    /// again does not repeat them.
    warned: Arc<Mutex<HashSet<String>>>,
}

impl ImageStore {
    /// The store at `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        ImageStore {
            dir,
            warned: Arc::default(),
        }
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError {
        let path = path.to_owned();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }

    /// Logs `message` once per store.
    fn warn_once(&self, message: String) {
        let first = self
            .warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(message.clone());
        if first {
            tracing::warn!("{message}");
        }
    }

    /// The directory image `<store>/<name>`, checked; its name must match the directory's.
    fn dir_image(&self, name: &str) -> Result<DirImage, ImageError> {
        let dir = self.dir.join(name);
        let invalid = |problem: String| ImageError::Invalid {
            path: dir.join(MANIFEST),
            problem,
        };
        let image = DirImage::read(&dir).map_err(invalid)?;
        if image.manifest.name != name {
            return Err(invalid(format!(
                "name {:?} does not match its directory {name:?}",
                image.manifest.name
            )));
        }
        Ok(image)
    }

    /// Every usable image in the store, sorted by name. Directory images with a broken
    /// manifest are left out with a warning (logged once).
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
            if meta.is_dir() {
                match self.dir_image(&name) {
                    Ok(image) => images.push(image.info()),
                    Err(e) => self.warn_once(format!("image {name} skipped: {e}")),
                }
                continue;
            }
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

    /// What to boot for image `name`, which must exist (and, for a directory image, have a
    /// valid manifest).
    pub fn resolve(&self, name: &str) -> Result<BootImage, ImageError> {
        check_image_name(name)?;
        let path = self.dir.join(name);
        if path.is_file() {
            return Ok(BootImage::Pvh(path));
        }
        if path.is_dir() {
            let image = self.dir_image(name)?;
            let m = image.manifest;
            return Ok(BootImage::Linux {
                kernel: path.join(&m.kernel),
                initrd: path.join(&m.initrd),
                cmdline: m.cmdline,
                min_memory_mib: m.min_memory_mib,
            });
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

    /// Copies the image directory `source` (holding `image.json`) into the store under the
    /// manifest's name, unless an identical copy is there already: into
    /// `.<name>.<pid>.tmp` first, then renamed into place. Returns the name and whether it
    /// copied.
    pub fn import_dir(&self, source: &Path) -> Result<(String, bool), ImageError> {
        let image = DirImage::read(source).map_err(|problem| ImageError::Invalid {
            path: source.join(MANIFEST),
            problem,
        })?;
        let name = image.manifest.name.clone();
        let files = image.files();
        fs::create_dir_all(&self.dir).map_err(self.io("create", &self.dir))?;
        let target = self.dir.join(&name);
        if target.is_dir() {
            let mut same = true;
            for file in &files {
                let from = source.join(file);
                if !same_contents(&from, &target.join(file)).map_err(self.io("read", &from))? {
                    same = false;
                    break;
                }
            }
            if same {
                return Ok((name, false));
            }
        }
        let pid = std::process::id();
        let temp = self.dir.join(format!(".{name}.{pid}.tmp"));
        remove_any(&temp).map_err(self.io("remove", &temp))?;
        let copied = copy_files(source, &temp, &files);
        if let Err(e) = copied {
            let _ = remove_any(&temp);
            return Err(e);
        }
        // A directory cannot be renamed over a non-empty one: move the old copy aside first.
        let old = self.dir.join(format!(".{name}.{pid}.old"));
        let had_old = match fs::symlink_metadata(&target) {
            Ok(_) => {
                remove_any(&old).map_err(self.io("remove", &old))?;
                fs::rename(&target, &old).map_err(|e| {
                    let _ = remove_any(&temp);
                    self.io("replace", &target)(e)
                })?;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                let _ = remove_any(&temp);
                return Err(self.io("read", &target)(e));
            }
        };
        if let Err(e) = fs::rename(&temp, &target) {
            if had_old {
                let _ = fs::rename(&old, &target);
            }
            let _ = remove_any(&temp);
            return Err(self.io("write", &target)(e));
        }
        if had_old {
            if let Err(e) = remove_any(&old) {
                tracing::warn!("cannot remove the replaced copy {}: {e}", old.display());
            }
        }
        Ok((name, true))
    }

    /// Imports every image directory in `dirs`: each given directory that holds `image.json`
    /// itself, else each of its subdirectories that does. Problems are logged and skip that
    /// image only. Returns the names imported or already up to date.
    pub fn import_dirs(&self, dirs: &[PathBuf]) -> Vec<String> {
        let mut imported = Vec::new();
        for dir in dirs {
            let candidates = match image_dirs_in(dir) {
                Ok(candidates) => candidates,
                Err(e) => {
                    tracing::warn!("image directory {}: cannot read it: {e}", dir.display());
                    continue;
                }
            };
            if candidates.is_empty() {
                tracing::warn!(
                    "image directory {}: no images found (no {MANIFEST} in it or its subdirectories)",
                    dir.display()
                );
            }
            for source in candidates {
                match self.import_dir(&source) {
                    Ok((name, copied)) => {
                        tracing::info!(
                            "image {name}: {} {}",
                            if copied {
                                "imported from"
                            } else {
                                "up to date with"
                            },
                            source.display()
                        );
                        imported.push(name);
                    }
                    Err(e) => tracing::warn!("image in {} skipped: {e}", source.display()),
                }
            }
        }
        imported
    }
}

/// `dir` itself if it holds `image.json`, else its subdirectories (not hidden) that do,
/// sorted.
fn image_dirs_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    if dir.join(MANIFEST).is_file() {
        return Ok(vec![dir.to_owned()]);
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue; // build directories, temporary copies
        }
        let path = entry.path();
        if path.join(MANIFEST).is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Copies `files` from `from` into the new directory `to`.
fn copy_files(from: &Path, to: &Path, files: &[String]) -> Result<(), ImageError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    };
    fs::create_dir(to).map_err(io("create", to))?;
    for file in files {
        let source = from.join(file);
        fs::copy(&source, to.join(file)).map_err(io("copy", &source))?;
    }
    Ok(())
}

/// Removes a file or directory tree; absent is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
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
        let err = store.resolve("nope").expect_err("missing");
        assert!(err.to_string().contains("available: other"), "{err}");
    }

    /// Writes an image directory like `make guest-linux` does.
    fn write_linux_image(dir: &Path, name: &str, kernel: &[u8]) -> PathBuf {
        let image = dir.join(name);
        std::fs::create_dir_all(&image).expect("mkdir");
        std::fs::write(image.join("kernel"), kernel).expect("kernel");
        std::fs::write(image.join("initrd"), b"initrd!").expect("initrd");
        std::fs::write(image.join("cmdline"), "console=ttyS0\n").expect("cmdline");
        let manifest = serde_json::json!({
            "name": name,
            "kind": "linux",
            "description": "test Linux",
            "kernel": "kernel",
            "initrd": "initrd",
            "cmdline": "console=ttyS0",
            "min_memory_mib": 256,
        });
        std::fs::write(image.join(MANIFEST), manifest.to_string()).expect("manifest");
        image
    }

    #[test]
    fn image_directories_are_imported_once_listed_and_resolved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("src");
        write_linux_image(&source, "kiln-linux", b"bzImage");
        std::fs::create_dir_all(source.join(".build-kiln-linux")).expect("mkdir");
        let store = ImageStore::new(dir.path().join("images"));
        assert_eq!(
            store.import_dirs(std::slice::from_ref(&source)),
            ["kiln-linux"]
        );
        assert!(
            !store
                .import_dir(&source.join("kiln-linux"))
                .expect("again")
                .1
        );
        let images = store.list().expect("list");
        assert_eq!(images.len(), 1);
        assert_eq!(
            (
                images[0].name.as_str(),
                images[0].kind.as_str(),
                images[0].size_bytes
            ),
            ("kiln-linux", "linux", 14)
        );
        assert_eq!(images[0].description, "test Linux");

        // A changed kernel replaces the copy; no temporary directories stay behind.
        write_linux_image(&source, "kiln-linux", b"a newer bzImage");
        assert!(
            store
                .import_dir(&source.join("kiln-linux"))
                .expect("changed")
                .1
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("images"))
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["kiln-linux"]);
        let stored = dir.path().join("images/kiln-linux");
        assert_eq!(
            std::fs::read(stored.join("kernel")).expect("kernel"),
            b"a newer bzImage"
        );
        assert!(stored.join("cmdline").is_file());
        assert_eq!(
            store.resolve("kiln-linux").expect("resolve"),
            BootImage::Linux {
                kernel: stored.join("kernel"),
                initrd: stored.join("initrd"),
                cmdline: Some("console=ttyS0".into()),
                min_memory_mib: Some(256),
            }
        );
    }

    #[test]
    fn broken_manifests_are_skipped_with_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::new(dir.path().join("images"));
        let good = write_linux_image(&dir.path().join("images"), "good", b"k");
        let cases: [(&str, &str, &str); 5] = [
            ("syntax", "{not json", "not a valid image manifest"),
            (
                "kind",
                r#"{"name":"kind","kind":"vmdk","kernel":"kernel","initrd":"initrd"}"#,
                "kind \"vmdk\" is not supported",
            ),
            (
                "escape",
                r#"{"name":"escape","kind":"linux","kernel":"../good/kernel","initrd":"initrd"}"#,
                "kernel must name a file in the image directory",
            ),
            (
                "nokernel",
                r#"{"name":"nokernel","kind":"linux","kernel":"vmlinuz","initrd":"initrd"}"#,
                "kernel file \"vmlinuz\"",
            ),
            (
                "renamed",
                r#"{"name":"other","kind":"linux","kernel":"kernel","initrd":"initrd"}"#,
                "does not match its directory",
            ),
        ];
        for (name, manifest, problem) in cases {
            let image = dir.path().join("images").join(name);
            std::fs::create_dir_all(&image).expect("mkdir");
            std::fs::write(image.join("kernel"), b"k").expect("kernel");
            std::fs::write(image.join("initrd"), b"i").expect("initrd");
            std::fs::write(image.join(MANIFEST), manifest).expect("manifest");
            let err = store.resolve(name).expect_err(name);
            assert!(
                matches!(&err, ImageError::Invalid { path, .. } if path == &image.join(MANIFEST)),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(problem), "{name}: {err}");
        }
        let listed: Vec<_> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(listed, ["good"]);
        assert!(matches!(
            store.resolve("good"),
            Ok(BootImage::Linux { ref kernel, .. }) if kernel == &good.join("kernel")
        ));
        // Importing a broken one fails with the same message and leaves the store as it was.
        let err = store
            .import_dir(&dir.path().join("images/syntax"))
            .expect_err("broken");
        assert!(
            err.to_string()
                .contains("image.json: not a valid image manifest"),
            "{err}"
        );
    }
}
