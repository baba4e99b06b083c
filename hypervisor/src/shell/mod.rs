//! The hypervisor shell on the physical console, with ACRN's commands. This file is the pure
//! part, host-tested: the line editor that turns console bytes into command lines, the command
//! parser, and the text helpers of the commands' output. `session` (bare metal only) polls the
//! physical UART on the pCPU that owns the console and runs the commands.
//!
//! Typed bytes are echoed as they come (the line being typed stays the console's last line:
//! a line of a VM or of the hypervisor printed meanwhile erases it, goes out whole, and draws
//! it again), Up and Down recall earlier commands, and a command runs when its line ends.
//! In `vm_console` mode every byte goes to that VM's console vUART until ACRN's escape key,
//! Ctrl+Space, which terminals send as NUL (0x00).

#[cfg(target_os = "none")]
pub mod session;

use core::fmt;

/// ACRN's shell prompt.
pub const PROMPT: &str = acrn_static_config::SHELL_PROMPT;
/// Leaves `vm_console`: Ctrl+Space, as in ACRN (terminals send NUL for it).
pub const ESCAPE_KEY: u8 = 0x00;
/// The longest command line kept; longer input is cut there (and reported).
pub const LINE_MAX: usize = 80;
/// The most bytes `dumpmem` shows in one command.
pub const DUMPMEM_MAX: u64 = 4096;

/// Commands the Up arrow recalls.
pub const HISTORY: usize = 8;

/// Collects console bytes into command lines: printable ASCII is kept, Backspace/DEL erase
/// the last byte, CR or LF ends the line, Up/Down step through the last [`HISTORY`] commands,
/// other ANSI escape sequences and control bytes are dropped. Each byte yields the [`Edit`]
/// that echoes it.
pub struct LineEditor {
    buf: [u8; LINE_MAX],
    len: usize,
    /// Bytes were dropped because the line was full.
    overflow: bool,
    escape: Escape,
    /// The previous byte was CR: an LF right after it ends nothing.
    after_cr: bool,
    /// Earlier command lines, `history[(newest - k) % HISTORY]` the k-th most recent.
    history: [([u8; LINE_MAX], usize); HISTORY],
    /// Lines in `history`, and the slot of the newest.
    stored: usize,
    newest: usize,
    /// How far back Up went (0: the line being typed).
    recalled: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// After ESC [ or ESC O, no parameter yet: an A or B now is an arrow key.
    Introduced,
    /// Inside the parameters of a control sequence, until its final byte (0x40-0x7E).
    Parameters,
}

/// What a byte changes of the line on the console.
#[derive(Debug, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Nothing to draw.
    None,
    /// The byte was added at the end of the line.
    Append(u8),
    /// The last character was erased.
    Erase,
    /// The line is now this one (recalled from the history).
    Replace(&'a str),
    /// The line ended: run it.
    Done(Line<'a>),
}

/// A finished line.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub text: &'a str,
    /// The input was longer than [`LINE_MAX`] and was cut.
    pub truncated: bool,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub const fn new() -> Self {
        LineEditor {
            buf: [0; LINE_MAX],
            len: 0,
            overflow: false,
            escape: Escape::None,
            after_cr: false,
            history: [([0; LINE_MAX], 0); HISTORY],
            stored: 0,
            newest: 0,
            recalled: 0,
        }
    }

    /// Takes one byte; says what it changed.
    pub fn push(&mut self, b: u8) -> Edit<'_> {
        let after_cr = core::mem::replace(&mut self.after_cr, b == b'\r');
        match self.escape {
            Escape::Start => {
                self.escape = if b == b'[' || b == b'O' {
                    Escape::Introduced
                } else {
                    Escape::None
                };
                return Edit::None;
            }
            Escape::Introduced | Escape::Parameters => {
                let arrow = self.escape == Escape::Introduced;
                self.escape = if (0x40..=0x7E).contains(&b) {
                    Escape::None
                } else {
                    Escape::Parameters
                };
                return match b {
                    b'A' if arrow => self.recall(self.recalled + 1),
                    b'B' if arrow && self.recalled > 0 => self.recall(self.recalled - 1),
                    _ => Edit::None,
                };
            }
            Escape::None => {}
        }
        match b {
            0x1B => self.escape = Escape::Start,
            b'\n' if after_cr => {}
            b'\r' | b'\n' => return self.finish(),
            0x08 | 0x7F if self.len > 0 => {
                self.len -= 1;
                return Edit::Erase;
            }
            0x20..=0x7E if self.len < LINE_MAX => {
                self.buf[self.len] = b;
                self.len += 1;
                return Edit::Append(b);
            }
            0x20..=0x7E => self.overflow = true,
            _ => {}
        }
        Edit::None
    }

    /// Ends the line and keeps it in the history (unless empty or the same as the last).
    fn finish(&mut self) -> Edit<'_> {
        let n = core::mem::take(&mut self.len);
        let truncated = core::mem::take(&mut self.overflow);
        self.recalled = 0;
        let line = &self.buf[..n];
        let last = &self.history[self.newest];
        if n > 0 && (self.stored == 0 || &last.0[..last.1] != line) {
            self.newest = (self.newest + 1) % HISTORY;
            self.history[self.newest].0[..n].copy_from_slice(line);
            self.history[self.newest].1 = n;
            self.stored = (self.stored + 1).min(HISTORY);
        }
        // Only printable ASCII is stored, so this is always UTF-8.
        let text = core::str::from_utf8(&self.buf[..n]).unwrap_or("");
        Edit::Done(Line { text, truncated })
    }

    /// Makes the line the `back`-th most recent command (0: an empty line).
    fn recall(&mut self, back: usize) -> Edit<'_> {
        if back > self.stored {
            return Edit::None;
        }
        self.recalled = back;
        self.overflow = false;
        self.len = 0;
        if back > 0 {
            let (text, n) = &self.history[(self.newest + HISTORY - (back - 1)) % HISTORY];
            self.buf[..*n].copy_from_slice(&text[..*n]);
            self.len = *n;
        }
        Edit::Replace(core::str::from_utf8(&self.buf[..self.len]).unwrap_or(""))
    }

    /// The line typed so far.
    pub fn text(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// Forgets a half-typed line (when the console changes hands).
    pub fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
        self.escape = Escape::None;
        self.recalled = 0;
    }
}

/// A shell command with its checked arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    VmList,
    VcpuList,
    VmConsole { vm: u16 },
    DumpReg { vm: u16, vcpu: u16 },
    DumpMem { vm: u16, gpa: u64, len: u64 },
    Vioapic { vm: u16 },
    Passthrough,
    Interrupts,
    VmExits,
    Reboot,
}

/// The commands: name, arguments, what it does (ACRN's `help` lists them this way).
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("help", "", "list the commands"),
    (
        "version",
        "",
        "the hypervisor's version, board and scenario",
    ),
    ("vm_list", "", "every VM: id, name, state, load order"),
    ("vcpu_list", "", "every vCPU: VM, vCPU, pCPU, state"),
    (
        "vm_console",
        "<vm_id>",
        "give the console's input to a VM's console vUART; Ctrl+Space returns",
    ),
    (
        "dump_reg",
        "<vm_id> <vcpu_id>",
        "a vCPU's registers (taken by the pCPU that runs it)",
    ),
    (
        "dumpmem",
        "<vm_id> <gpa> <length>",
        "guest-physical memory of a VM (length up to 4096)",
    ),
    ("vioapic", "<vm_id>", "a VM's virtual I/O APIC pins"),
    ("pt", "", "passthrough devices"),
    (
        "int",
        "",
        "interrupts the hypervisor took, per pCPU and vector",
    ),
    ("vmexit", "", "every VM's exits to the hypervisor, by kind"),
    ("reboot", "", "reset the machine"),
];

/// Why a line is not a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError<'a> {
    Unknown(&'a str),
    /// (command, its usage)
    Usage(&'static str, &'static str),
    BadNumber(&'a str),
    TooLong {
        len: u64,
    },
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unknown(c) => write!(f, "unknown command `{c}`; `help` lists them"),
            ParseError::Usage(c, "") => write!(f, "usage: {c} (no arguments)"),
            ParseError::Usage(c, args) => write!(f, "usage: {c} {args}"),
            ParseError::BadNumber(s) => {
                write!(f, "`{s}` is not a number (decimal, or hexadecimal with 0x)")
            }
            ParseError::TooLong { len } => {
                write!(f, "length {len} is more than dumpmem shows ({DUMPMEM_MAX})")
            }
        }
    }
}

/// A number in decimal or, with `0x`, hexadecimal.
pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None => s.parse().ok(),
    }
}

/// Parses a command line; `Ok(None)` for an empty line.
pub fn parse(line: &str) -> Result<Option<Command>, ParseError<'_>> {
    let mut words = line.split_ascii_whitespace();
    let Some(name) = words.next() else {
        return Ok(None);
    };
    let mut args = [""; 4];
    let mut n = 0;
    for w in words {
        if n == args.len() {
            n += 1;
            break;
        }
        args[n] = w;
        n += 1;
    }
    let Some(&(name, usage, _)) = COMMANDS.iter().find(|c| c.0 == name) else {
        return Err(ParseError::Unknown(name));
    };
    let want = usage.split_ascii_whitespace().count();
    if n != want {
        return Err(ParseError::Usage(name, usage));
    }
    let mut nums = [0u64; 3];
    for (slot, a) in nums.iter_mut().zip(&args[..want]) {
        *slot = parse_number(a).ok_or(ParseError::BadNumber(a))?;
    }
    let id = |v: u64| u16::try_from(v).map_err(|_| ParseError::Usage(name, usage));
    Ok(Some(match name {
        "help" => Command::Help,
        "version" => Command::Version,
        "vm_list" => Command::VmList,
        "vcpu_list" => Command::VcpuList,
        "vm_console" => Command::VmConsole { vm: id(nums[0])? },
        "dump_reg" => Command::DumpReg {
            vm: id(nums[0])?,
            vcpu: id(nums[1])?,
        },
        "dumpmem" => {
            if nums[2] > DUMPMEM_MAX {
                return Err(ParseError::TooLong { len: nums[2] });
            }
            Command::DumpMem {
                vm: id(nums[0])?,
                gpa: nums[1],
                len: nums[2],
            }
        }
        "vioapic" => Command::Vioapic { vm: id(nums[0])? },
        "pt" => Command::Passthrough,
        "int" => Command::Interrupts,
        "vmexit" => Command::VmExits,
        _ => Command::Reboot,
    }))
}

/// One line of a hex dump: the address, up to 16 bytes in hex, and the printable ones.
pub struct HexLine<'a> {
    pub addr: u64,
    pub bytes: &'a [u8],
}

impl fmt::Display for HexLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}:", self.addr)?;
        for i in 0..16 {
            match self.bytes.get(i) {
                Some(b) => write!(f, " {b:02x}")?,
                None => f.write_str("   ")?,
            }
        }
        f.write_str("  ")?;
        for &b in self.bytes.iter().take(16) {
            let c = if (0x20..0x7F).contains(&b) {
                b as char
            } else {
                '.'
            };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// One pin of a vIOAPIC as `vioapic` shows it (ACRN's columns).
pub struct RteLine {
    pub pin: usize,
    pub rte: u64,
}

impl fmt::Display for RteLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rte;
        let delivery = match (r >> 8) & 7 {
            0 => "fixed",
            1 => "lowest",
            2 => "smi",
            4 => "nmi",
            5 => "init",
            7 => "extint",
            _ => "reserved",
        };
        write!(
            f,
            "{:3}  {:#04x}  {:7}  {:#04x}  {:5}  {:8}  {:4}  {:<3}  {}",
            self.pin,
            r as u8,
            if r & 1 << 11 != 0 { "logical" } else { "phys" },
            r >> 56,
            if r & 1 << 15 != 0 { "level" } else { "edge" },
            delivery,
            if r & 1 << 13 != 0 { "low" } else { "high" },
            (r >> 14) & 1,
            if r & 1 << 16 != 0 {
                "masked"
            } else {
                "unmasked"
            },
        )
    }
}

/// The heading of the `vioapic` table.
pub const RTE_HEADING: &str = "PIN  VEC   DM       DEST  TM     DELM      POL   IRR  MASK";

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<(String, bool)> {
        let mut e = LineEditor::new();
        input
            .iter()
            .filter_map(|&b| match e.push(b) {
                Edit::Done(l) => Some((l.text.to_string(), l.truncated)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lines_end_at_cr_lf_or_crlf_once() {
        let got = lines(b"vm_list\r\nint\nhelp\r\r\n");
        let texts: Vec<_> = got.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(texts, ["vm_list", "int", "help", ""]);
    }

    #[test]
    fn editing_and_escape_sequences() {
        assert_eq!(lines(b"vm_lisx\x08t\n")[0].0, "vm_list");
        assert_eq!(lines(b"\x7f\x7fint\x7f\x7f\x7f\x7fint\n")[0].0, "int");
        // Up arrow, a cursor position report, then the command.
        assert_eq!(lines(b"\x1b[A\x1b[12;40Rhelp\n")[0].0, "help");
        assert_eq!(lines(b"\x1bOPhelp\n")[0].0, "help", "SS3 function key");
        assert_eq!(
            lines(b"he\x01\x00\tlp\n")[0].0,
            "help",
            "control bytes dropped"
        );
        assert_eq!(lines(b"h\xff\xc3lp\n")[0].0, "hlp", "non-ASCII dropped");
    }

    /// What the console shows after each byte, as the session draws it.
    fn screen(input: &[u8]) -> Vec<String> {
        let mut e = LineEditor::new();
        let mut line = String::new();
        let mut shown = Vec::new();
        for &b in input {
            match e.push(b) {
                Edit::None => continue,
                Edit::Append(c) => line.push(c as char),
                Edit::Erase => {
                    line.pop();
                }
                Edit::Replace(t) => line = t.to_string(),
                Edit::Done(l) => {
                    assert_eq!(l.text, line, "the echo shows the line that runs");
                    line.clear();
                    shown.push(format!("ran {}", l.text));
                    continue;
                }
            }
            assert_eq!(e.text(), line);
            shown.push(line.clone());
        }
        shown
    }

    #[test]
    fn typed_bytes_are_echoed() {
        assert_eq!(
            screen(b"in\x7fnt\x01\r\n"),
            ["i", "in", "i", "in", "int", "ran int"]
        );
        assert_eq!(screen(b"\x08\x7f\n"), ["ran "], "nothing to erase");
    }

    #[test]
    fn up_and_down_recall_earlier_commands() {
        const UP: &[u8] = b"\x1b[A";
        const DOWN: &[u8] = b"\x1bOB";
        let mut input = b"vm_list\rint\r".to_vec();
        for k in [UP, UP, UP, DOWN, b"\r"] {
            input.extend_from_slice(k);
        }
        let got = screen(&input);
        assert_eq!(
            &got[got.len() - 5..],
            ["ran int", "int", "vm_list", "int", "ran int"],
            "Up stops at the oldest (the third Up changes nothing), Down steps back"
        );
        // Down past the newest gives an empty line; a recalled line can be edited.
        let got = screen(b"help\r\x1b[A\x1b[B\x1b[A\x7fx\r");
        assert_eq!(
            &got[got.len() - 6..],
            ["help", "", "help", "hel", "helx", "ran helx"]
        );
        // A repeated command is kept once; the history holds the last HISTORY ones.
        let mut e = LineEditor::new();
        for i in 0..HISTORY + 3 {
            for b in format!("dumpmem 0 {i} 1\rdumpmem 0 {i} 1\r").bytes() {
                e.push(b);
            }
        }
        for _ in 0..HISTORY {
            for &b in UP {
                e.push(b);
            }
        }
        assert_eq!(e.text(), "dumpmem 0 3 1");
        for &b in UP {
            assert_eq!(e.push(b), Edit::None, "nothing older");
        }
        // Parameters make it another sequence, not an arrow.
        assert_eq!(screen(b"x\x1b[1;5A\r"), ["x", "ran x"]);
    }

    #[test]
    fn long_lines_are_cut_and_say_so() {
        let mut input = vec![b'a'; LINE_MAX + 10];
        input.push(b'\n');
        input.extend_from_slice(b"int\n");
        let got = lines(&input);
        assert_eq!(got[0].0.len(), LINE_MAX);
        assert!(got[0].1);
        assert_eq!(got[1], ("int".to_string(), false));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("42"), Some(42));
        assert_eq!(parse_number("0x1F000"), Some(0x1F000));
        assert_eq!(parse_number("0X10"), Some(16));
        for bad in ["", "0x", "-1", "12a", "0xg", "99999999999999999999999"] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse("help"), Ok(Some(Command::Help)));
        assert_eq!(parse("  vm_list  "), Ok(Some(Command::VmList)));
        assert_eq!(
            parse("vm_console 1"),
            Ok(Some(Command::VmConsole { vm: 1 }))
        );
        assert_eq!(
            parse("dump_reg 0 1"),
            Ok(Some(Command::DumpReg { vm: 0, vcpu: 1 }))
        );
        assert_eq!(
            parse("dumpmem 0 0x100000 64"),
            Ok(Some(Command::DumpMem {
                vm: 0,
                gpa: 0x100000,
                len: 64
            }))
        );
        assert_eq!(parse("vioapic 0x1"), Ok(Some(Command::Vioapic { vm: 1 })));
        assert_eq!(parse("pt"), Ok(Some(Command::Passthrough)));
        assert_eq!(parse("int"), Ok(Some(Command::Interrupts)));
        assert_eq!(parse("vmexit"), Ok(Some(Command::VmExits)));
        assert_eq!(parse("reboot"), Ok(Some(Command::Reboot)));
        assert_eq!(parse("version"), Ok(Some(Command::Version)));
        assert_eq!(parse("vcpu_list"), Ok(Some(Command::VcpuList)));
    }

    #[test]
    fn bad_commands_are_errors_with_a_message() {
        assert_eq!(parse("bogus 1"), Err(ParseError::Unknown("bogus")));
        assert_eq!(
            parse("vm_console"),
            Err(ParseError::Usage("vm_console", "<vm_id>"))
        );
        assert_eq!(
            parse("help me"),
            Err(ParseError::Usage("help", "")),
            "extra arguments"
        );
        assert_eq!(
            parse("dump_reg 0 1 2 3 4 5"),
            Err(ParseError::Usage("dump_reg", "<vm_id> <vcpu_id>"))
        );
        assert_eq!(parse("dump_reg zero 1"), Err(ParseError::BadNumber("zero")));
        assert_eq!(
            parse("vioapic 65536"),
            Err(ParseError::Usage("vioapic", "<vm_id>")),
            "VM id out of range"
        );
        assert_eq!(
            parse("dumpmem 0 0 4097"),
            Err(ParseError::TooLong { len: 4097 })
        );
        let msg = format!("{}", parse("frobnicate").unwrap_err());
        assert!(msg.contains("unknown command `frobnicate`"), "{msg}");
        let msg = format!("{}", parse("dumpmem 0").unwrap_err());
        assert_eq!(msg, "usage: dumpmem <vm_id> <gpa> <length>");
        let msg = format!("{}", parse("int 0").unwrap_err());
        assert_eq!(msg, "usage: int (no arguments)");
    }

    #[test]
    fn every_command_is_in_help_and_parses() {
        for (name, usage, _) in COMMANDS {
            let args: Vec<&str> = usage.split_ascii_whitespace().map(|_| "0").collect();
            let line = format!("{name} {}", args.join(" "));
            assert!(matches!(parse(&line), Ok(Some(_))), "{line}");
        }
    }

    #[test]
    fn no_input_panics() {
        // Every byte pair through the editor and every resulting line through the parser.
        let mut e = LineEditor::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in [a, b, b' ', b'1', b'\n', 0x1B, b'[', b'A'] {
                    if let Edit::Done(l) = e.push(c) {
                        let _ = parse(l.text).map_err(|err| format!("{err}"));
                    }
                }
            }
        }
    }

    #[test]
    fn hex_lines() {
        let s = format!(
            "{}",
            HexLine {
                addr: 0x1000,
                bytes: b"ACRN\x00\x01"
            }
        );
        // Ten missing bytes keep their columns, so the text column lines up.
        let pad = " ".repeat(10 * 3);
        assert_eq!(
            s,
            format!("0x0000000000001000: 41 43 52 4e 00 01{pad}  ACRN..")
        );
    }

    #[test]
    fn rte_lines() {
        let masked = format!(
            "{}",
            RteLine {
                pin: 4,
                rte: 1 << 16
            }
        );
        assert!(
            masked.ends_with("masked") && masked.contains("edge"),
            "{masked}"
        );
        let level = format!(
            "{}",
            RteLine {
                pin: 9,
                rte: 0x0300_0000_0000_a931
            }
        );
        assert_eq!(
            level,
            "  9  0x31  logical  0x03  level  lowest    low   0    unmasked"
        );
    }
}
