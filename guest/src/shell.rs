//! The line shell on the serial console.

use core::sync::atomic::Ordering;

use crate::apic::{self, TICKS, TICK_HZ};
use crate::memtest::{self, Pattern, PatternArea, Ring};
use crate::{power, print, println, serial};

const LINE_MAX: usize = 128;
const PROMPT: &str = "kiln> ";

/// A running `dirty` command.
struct Dirty {
    pages_per_sec: u64,
    started_us: u64,
    written: u64,
}

/// Shell state: the line being typed, the memory pattern, a running `dirty`.
pub struct Shell {
    line: [u8; LINE_MAX],
    len: usize,
    last_was_cr: bool,
    area: PatternArea,
    pattern: Option<Pattern>,
    ring: Ring,
    dirty: Option<Dirty>,
}

impl Shell {
    /// A shell over the given pattern area.
    pub fn new(area: PatternArea) -> Self {
        Shell {
            line: [0; LINE_MAX],
            len: 0,
            last_was_cr: false,
            area,
            pattern: None,
            ring: Ring::User,
            dirty: None,
        }
    }

    /// Print the prompt.
    pub fn prompt(&self) {
        print!("{PROMPT}");
    }

    /// Handle one input byte (echoing it like a terminal in cooked mode).
    pub fn feed(&mut self, byte: u8) {
        if self.dirty.is_some() {
            self.stop_dirty();
            return;
        }
        let was_cr = core::mem::replace(&mut self.last_was_cr, byte == b'\r');
        match byte {
            b'\n' if was_cr => {}
            b'\r' | b'\n' => {
                println!();
                let mut line = [0u8; LINE_MAX];
                let len = self.len;
                line[..len].copy_from_slice(&self.line[..len]);
                self.len = 0;
                self.execute(core::str::from_utf8(&line[..len]).unwrap_or(""));
                if self.dirty.is_none() {
                    self.prompt();
                }
            }
            0x08 | 0x7f if self.len > 0 => {
                self.len -= 1;
                serial::write_bytes(b"\x08 \x08");
            }
            0x03 => {
                self.len = 0;
                println!("^C");
                self.prompt();
            }
            0x20..=0x7e if self.len < LINE_MAX => {
                self.line[self.len] = byte;
                self.len += 1;
                serial::write_bytes(&[byte]);
            }
            _ => {}
        }
    }

    fn execute(&mut self, line: &str) {
        let line = line.trim();
        let (cmd, rest) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        match cmd {
            "" => {}
            "help" => help(),
            "echo" => println!("{rest}"),
            "uptime" => {
                let us = apic::now_us();
                println!("up {}.{:03} s", us / 1_000_000, (us / 1000) % 1000);
            }
            "ticks" => println!("ticks {} ({} Hz)", TICKS.load(Ordering::Acquire), TICK_HZ),
            "mem" => self.mem(rest),
            "dirty" => self.start_dirty(rest),
            "powerbutton" => match rest {
                "on" => power::set_button_enabled(true),
                "off" => power::set_button_enabled(false),
                "" => println!(
                    "power button {}",
                    if power::button_enabled() { "on" } else { "off" }
                ),
                _ => println!("usage: powerbutton [on|off]"),
            },
            "poweroff" => {
                println!("powering off");
                power::poweroff();
            }
            "reboot" => {
                println!("rebooting");
                power::reboot();
            }
            _ => println!("unknown command '{cmd}'; try 'help'"),
        }
    }

    fn mem(&mut self, args: &str) {
        let mut words = args.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("fill"), Some(mib), Some(seed), extra) => {
                let (Some(mib), Some(seed)) = (parse_u64(mib), parse_u64(seed)) else {
                    println!("usage: mem fill <MiB> <seed>");
                    return;
                };
                let Some(ring) = self.ring_arg(extra) else {
                    return;
                };
                let available = self.area.pages / 256;
                if mib == 0 || mib > available {
                    println!(
                        "error: mem fill wants 1..={available} MiB (the RAM above the guest image)"
                    );
                    return;
                }
                self.dirty = None;
                let t0 = apic::now_us();
                let (pattern, checksum) = memtest::fill(&self.area, seed, mib * 256, ring);
                let us = apic::now_us().saturating_sub(t0);
                println!(
                    "filled {} pages ({mib} MiB) seed {seed} in {} us ({}), checksum {checksum:#018x}",
                    pattern.pages, us, ring_name(ring)
                );
                self.pattern = Some(pattern);
            }
            (Some("verify"), extra, None, None) => {
                let Some(ring) = self.ring_arg(extra) else {
                    return;
                };
                let Some(pattern) = &self.pattern else {
                    println!("error: no pattern yet; run 'mem fill <MiB> <seed>' first");
                    return;
                };
                let t0 = apic::now_us();
                let r = memtest::verify(&self.area, pattern, ring);
                let us = apic::now_us().saturating_sub(t0);
                if r.mismatches == 0 {
                    println!(
                        "verify ok: {} pages in {us} us ({}), checksum {:#018x}",
                        pattern.pages,
                        ring_name(ring),
                        r.checksum
                    );
                } else {
                    println!(
                        "verify FAILED: {} of {} pages differ (first: page {}), checksum {:#018x}",
                        r.mismatches, pattern.pages, r.first_bad, r.checksum
                    );
                }
            }
            (Some("ring"), Some(r), None, None) => match parse_ring(r) {
                Some(ring) => {
                    self.ring = ring;
                    println!("memory loops now run in {}", ring_name(ring));
                }
                None => println!("usage: mem ring <0|3>"),
            },
            (Some("info"), None, None, None) => {
                println!(
                    "pattern area: {} MiB; loops run in {}",
                    self.area.pages / 256,
                    ring_name(self.ring)
                );
            }
            _ => println!(
                "usage: mem fill <MiB> <seed> [0|3] | mem verify [0|3] | mem ring <0|3> | mem info"
            ),
        }
    }

    fn ring_arg(&self, arg: Option<&str>) -> Option<Ring> {
        match arg {
            None => Some(self.ring),
            Some(a) => {
                let ring = parse_ring(a);
                if ring.is_none() {
                    println!("error: ring must be 0 or 3");
                }
                ring
            }
        }
    }

    fn start_dirty(&mut self, args: &str) {
        let Some(rate) = parse_u64(args).filter(|r| *r > 0) else {
            println!("usage: dirty <MiB/s>");
            return;
        };
        if self.pattern.is_none() {
            println!("error: no pattern yet; run 'mem fill <MiB> <seed>' first");
            return;
        }
        println!("dirtying {rate} MiB/s; press any key to stop");
        self.dirty = Some(Dirty {
            pages_per_sec: rate * 256,
            started_us: apic::now_us(),
            written: 0,
        });
    }

    fn stop_dirty(&mut self) {
        if let Some(d) = self.dirty.take() {
            let us = apic::now_us().saturating_sub(d.started_us);
            println!(
                "dirty stopped: {} pages rewritten in {} ms",
                d.written,
                us / 1000
            );
            if let Some(p) = &self.pattern {
                println!("pattern at generation {} + {} pages", p.passes, p.cursor);
            }
            self.prompt();
        }
    }

    /// Called on every wake-up: advance a running `dirty` to where its rate says it should be.
    pub fn tick(&mut self) {
        let (Some(d), Some(p)) = (&mut self.dirty, &mut self.pattern) else {
            return;
        };
        let elapsed = apic::now_us().saturating_sub(d.started_us);
        let due = (d.pages_per_sec as u128 * elapsed as u128 / 1_000_000) as u64;
        if due > d.written {
            // Never more than a second's worth at once (after a long pause, say).
            let step = (due - d.written).min(d.pages_per_sec);
            memtest::dirty_step(&self.area, p, step, self.ring);
            d.written = due;
        }
    }
}

fn help() {
    println!("commands:");
    println!("  help                     this list");
    println!("  uptime                   time since boot (stops while the VM is paused)");
    println!("  echo <text>              print text");
    println!("  ticks                    timer interrupts since boot");
    println!("  mem fill <MiB> <seed>    write one seeded word into every 4 KiB page");
    println!("  mem verify               check every page, print the checksum");
    println!("  mem ring <0|3>           run memory loops in ring 0 or ring 3");
    println!("  mem info                 size of the pattern area");
    println!(
        "  dirty <MiB/s>            keep rewriting pattern pages at that rate (any key stops)"
    );
    println!("  powerbutton [on|off]     obey (default) or ignore the VMM's power button");
    println!("  poweroff                 power the VM off");
    println!("  reboot                   reset the VM (i8042)");
}

fn ring_name(ring: Ring) -> &'static str {
    match ring {
        Ring::Kernel => "ring 0",
        Ring::User => "ring 3",
    }
}

fn parse_ring(s: &str) -> Option<Ring> {
    match s {
        "0" => Some(Ring::Kernel),
        "3" => Some(Ring::User),
        _ => None,
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}
