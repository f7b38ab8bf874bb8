//! The terminal while `ringproxy top` runs: raw mode (keys arrive one by one, unechoed),
//! the alternate screen and a hidden cursor, all undone when the guard drops, on a quit, an
//! error or a panic alike. Plain ANSI sequences that every terminal emulator and tmux know.

use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// Enters the alternate screen, hides the cursor; leaves both.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
const LEAVE: &str = "\x1b[?25h\x1b[?1049l";

/// Raw mode and the alternate screen until dropped.
pub struct Terminal {
    saved: libc::termios,
}

impl Terminal {
    /// Switches the terminal on stdin to raw mode and stdout to the alternate screen.
    pub fn enter() -> io::Result<Self> {
        let fd = io::stdin().as_raw_fd();
        // SAFETY: termios is a plain C struct of integers and arrays, for which all zeroes is
        // a valid value; tcgetattr fills it in.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is this process's stdin, open for its lifetime; `saved` is a valid,
        // writable termios. std has no terminal-mode API; libc is already a dependency.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        // SAFETY: `raw` is a valid termios; cfmakeraw only changes its flags.
        unsafe { libc::cfmakeraw(&mut raw) };
        // Reads return as soon as one byte is there.
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        set_attributes(fd, &raw)?;
        let terminal = Self { saved };
        let mut out = io::stdout().lock();
        out.write_all(ENTER.as_bytes())?;
        out.flush()?;
        Ok(terminal)
    }

    /// Draws `lines` from the top-left corner, each cleared to the end of its line, then
    /// clears below: one write, so the screen does not flicker.
    pub fn draw(&self, lines: &[String]) -> io::Result<()> {
        let mut screen = String::from("\x1b[H");
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                screen.push_str("\r\n");
            }
            screen.push_str(line);
            screen.push_str("\x1b[K");
        }
        screen.push_str("\x1b[J");
        let mut out = io::stdout().lock();
        out.write_all(screen.as_bytes())?;
        out.flush()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(LEAVE.as_bytes());
        let _ = out.flush();
        let _ = set_attributes(io::stdin().as_raw_fd(), &self.saved);
    }
}

fn set_attributes(fd: i32, attributes: &libc::termios) -> io::Result<()> {
    // SAFETY: `fd` is stdin; `attributes` is a valid termios read by tcsetattr only.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, attributes) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The terminal's columns and rows on stdout; 80x24 when it will not say.
pub fn size() -> (usize, usize) {
    // SAFETY: winsize is a plain C struct of integers; all zeroes is a valid value.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into the valid, writable `size`; on a descriptor
    // that is not a terminal it fails and writes nothing.
    let ok = unsafe { libc::ioctl(io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut size) } == 0;
    if !ok || size.ws_col == 0 || size.ws_row == 0 {
        return (80, 24);
    }
    (usize::from(size.ws_col), usize::from(size.ws_row))
}

/// What a key press asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
}

/// The keys in one read from the terminal: `q`, Ctrl-C and Ctrl-D quit; `j`/`k` and the
/// arrows scroll by a line, space/`b` and PageDown/PageUp by a page, `g`/`G` and Home/End
/// to either end. Anything else (a lone Escape included) is ignored.
pub fn keys(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut rest = bytes;
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        let key = match first {
            b'q' | b'Q' | 0x03 | 0x04 => Some(Key::Quit),
            b'j' => Some(Key::Down),
            b'k' => Some(Key::Up),
            b' ' => Some(Key::PageDown),
            b'b' => Some(Key::PageUp),
            b'g' => Some(Key::Top),
            b'G' => Some(Key::Bottom),
            0x1b => {
                let (key, used) = escape_sequence(rest);
                rest = &rest[used..];
                key
            }
            _ => None,
        };
        keys.extend(key);
    }
    keys
}

/// The key of the CSI (`ESC [`) or SS3 (`ESC O`) sequence at the start of `bytes`, and how
/// many bytes it took.
fn escape_sequence(bytes: &[u8]) -> (Option<Key>, usize) {
    let sequences: [(&[u8], Key); 10] = [
        (b"[A", Key::Up),
        (b"OA", Key::Up),
        (b"[B", Key::Down),
        (b"OB", Key::Down),
        (b"[5~", Key::PageUp),
        (b"[6~", Key::PageDown),
        (b"[H", Key::Top),
        (b"[1~", Key::Top),
        (b"[F", Key::Bottom),
        (b"[4~", Key::Bottom),
    ];
    sequences
        .iter()
        .find(|(sequence, _)| bytes.starts_with(sequence))
        .map_or((None, 0), |&(sequence, key)| (Some(key), sequence.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_escape_sequences_are_read_from_one_chunk() {
        assert_eq!(keys(b"jjk"), [Key::Down, Key::Down, Key::Up]);
        assert_eq!(
            keys(b"\x1b[B\x1b[A\x1b[6~x"),
            [Key::Down, Key::Up, Key::PageDown]
        );
        assert_eq!(keys(b"\x1b"), []);
        assert_eq!(keys(b"\x1b\x1bq"), [Key::Quit]);
        assert_eq!(keys(b"\x03"), [Key::Quit]);
        assert_eq!(
            keys(b"\x1b[Zq"),
            [Key::Quit],
            "an unknown sequence is skipped"
        );
    }
}
