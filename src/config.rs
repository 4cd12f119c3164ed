//! Configuration loading shared by every daemon (mip4-ha, mip4d, mip4-fa).
//!
//! Files are TOML, read with serde. Every error names the file, the line
//! and the key, e.g. `mip4-ha.conf:12: key `spi`: expected an integer`,
//! because the people who read these errors are operators editing a file,
//! not programmers reading a backtrace. Lines come from toml's span
//! information.
//!
//! Secrets ([`SecretKey`]) never reach a log: their `Debug` is redacted and
//! they have no `Display`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use zeroize::Zeroizing;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given by the operator.
    pub file: PathBuf,
    /// 1-based line, when the error has a place in the file.
    pub line: Option<usize>,
    /// The key (dotted path where known), when the error is about one.
    pub key: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text of a configuration file with its name, to turn byte offsets
/// and keys into `file:line: key` errors after parsing (semantic checks).
/// The text may hold keys: it is zeroised on drop and its `Debug` shows
/// only the file's name.
#[derive(Clone)]
pub struct Source {
    pub file: PathBuf,
    pub text: Zeroizing<String>,
    /// The file's permission bits, when it was read from disk.
    mode: Option<u32>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({})", self.file.display())
    }
}

impl Source {
    /// Reads `path`; an unreadable file is a [`ConfigError`] naming it.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        use std::os::unix::fs::MetadataExt;
        let cannot = |e: std::io::Error| ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(cannot)?);
        let mode = std::fs::metadata(path).map_err(cannot)?.mode();
        Ok(Self {
            file: path.to_owned(),
            text,
            mode: Some(mode & 0o7777),
        })
    }

    pub fn from_str(file: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            text: Zeroizing::new(text.into()),
            mode: None,
        }
    }

    /// A key written inline (`key`, at its `occurrence`-th assignment)
    /// makes this file a secret: like a `key_file`, it must not be
    /// accessible by group or others.
    pub fn refuse_shared_inline_key(
        &self,
        key: &str,
        occurrence: usize,
    ) -> Result<(), ConfigError> {
        match self.mode {
            Some(mode) if mode & 0o077 != 0 => Err(self.error_at_key(
                key,
                occurrence,
                format!(
                    "an inline key in a file accessible by group or others (mode {:o}); \
                     chmod 600 the file, or put the key in a key_file",
                    mode & 0o777
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Parses the whole file into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| self.toml_error(&e))
    }

    /// 1-based line of byte offset `at`.
    pub fn line_of(&self, at: usize) -> usize {
        let at = at.min(self.text.len());
        self.text.as_bytes()[..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error about `key`, located at the `occurrence`-th (0-based) line
    /// in the file that assigns that key (`key = ...`). Used by semantic
    /// checks that run after serde, when spans are gone.
    pub fn error_at_key(
        &self,
        key: &str,
        occurrence: usize,
        message: impl Into<String>,
    ) -> ConfigError {
        let leaf = key.rsplit('.').next().unwrap_or(key);
        let line = self
            .text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim_start();
                l.strip_prefix(leaf)
                    .map(|rest| rest.trim_start().starts_with('='))
                    .unwrap_or(false)
            })
            .nth(occurrence)
            .map(|(i, _)| i + 1);
        ConfigError {
            file: self.file.clone(),
            line,
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    /// An error about the file as a whole (no line).
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let line = span.as_ref().map(|s| self.line_of(s.start));
        let raw = e.message().trim().to_owned();
        // The key: a backquoted field name in serde's own messages
        // ("unknown field `x`", "missing field `x`"), else the key whose
        // value the span points at (`key = <value>` on that line).
        let key = backquoted(&raw).or_else(|| {
            let s = span.as_ref()?;
            let start = self.text[..s.start.min(self.text.len())]
                .rfind('\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            let line_text = &self.text[start..];
            let line_text = line_text.lines().next().unwrap_or("");
            let (k, _) = line_text.split_once('=')?;
            let k = k.trim().trim_matches('"');
            (!k.is_empty() && !k.starts_with('[')).then(|| k.to_owned())
        });
        // serde's and toml's messages may quote the value ("found integer
        // `1122...`"): about a secret, say what is wrong in our words only.
        let message = match &key {
            Some(k) if is_secret_key(k) && !KEY_ERRORS.contains(&raw.as_str()) => {
                "must be hex digits in double quotes (the value is not shown)".to_owned()
            }
            _ => humanize(&raw),
        };
        ConfigError {
            file: self.file.clone(),
            line,
            key,
            message,
        }
    }
}

/// Keys whose values are secrets (`key`, `mobile_node.key`, ...).
fn is_secret_key(key: &str) -> bool {
    key.rsplit('.').next() == Some("key")
}

/// What [`SecretKey::from_hex`] says about a bad key: never its value.
const KEY_ERRORS: &[&str] = &[
    "empty key",
    "hex key has an odd number of digits",
    "key is not hex",
];

/// Loads and parses a TOML file into `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<(T, Source), ConfigError> {
    let src = Source::read(path)?;
    let value = src.parse()?;
    Ok((value, src))
}

fn backquoted(msg: &str) -> Option<String> {
    let (kind, rest) = msg.split_once('`')?;
    if !(kind.contains("unknown field") || kind.contains("missing field")) {
        return None;
    }
    let (name, _) = rest.split_once('`')?;
    Some(name.to_owned())
}

/// Turns serde's type-mismatch phrasing ("invalid type: string \"x\",
/// expected u32") into an operator's ("expected an integer, found string
/// \"x\"").
fn humanize(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let expected = match expected {
                "u8" | "u16" | "u32" | "u64" | "i64" | "usize" => "an integer",
                "a boolean" | "bool" => "a boolean (true or false)",
                other => other,
            };
            return format!("expected {expected}, found {found}");
        }
    }
    msg.to_owned()
}

/// A secret key (MN-HA shared secret). Zeroed on drop; `Debug` shows only
/// its length; there is no `Display` and no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Zeroizing<Vec<u8>>);

impl SecretKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Parses hex digits (whitespace and an optional `0x` ignored).
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(&s);
        if s.is_empty() {
            return Err("empty key".into());
        }
        if s.len() % 2 != 0 {
            return Err("hex key has an odd number of digits".into());
        }
        let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
        for pair in s.as_bytes().chunks(2) {
            let hi = hex_digit(pair[0]).ok_or("key is not hex")?;
            let lo = hex_digit(pair[1]).ok_or("key is not hex")?;
            out.push(hi << 4 | lo);
        }
        Ok(Self(out))
    }

    /// Reads a key file: hex text. The file must not be readable by group or
    /// others (it holds a shared secret).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{}: key file is accessible by group or others (mode {:o}); chmod 600 it",
                path.display(),
                meta.mode() & 0o777
            ));
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        Self::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<redacted, {} bytes>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        SecretKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// For the daemons' configuration tests: `text`, written as a file others
/// can read, is refused by `load` with an error about `key`; the same
/// file made private loads.
#[cfg(test)]
pub(crate) fn assert_inline_key_needs_private_file<T>(
    text: &str,
    load: impl Fn(&Path) -> Result<T, ConfigError>,
    key: &str,
) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("daemon.conf");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load(&p).err().expect("refused").to_string();
    let want =
        format!("key `{key}`: an inline key in a file accessible by group or others (mode 644)");
    assert!(e.contains(&want), "{e}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(load(&p).is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        #[serde(default)]
        item: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        spi: u32,
        key: Option<SecretKey>,
    }

    fn err(text: &str) -> String {
        Source::from_str("demo.conf", text)
            .parse::<Demo>()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn type_error_names_file_line_and_key() {
        let e = err("name = \"x\"\n\n[[item]]\nspi = \"abc\"\n");
        assert!(
            e.starts_with("demo.conf:4: key `spi`: expected an integer"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("name = \"x\"\nnmae = 3\n");
        assert!(
            e.starts_with("demo.conf:2: key `nmae`: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn missing_key_is_named() {
        let e = err("name = \"x\"\n[[item]]\nkey = \"00\"\n");
        assert!(e.contains("key `spi`: missing field"), "{e}");
        assert!(e.starts_with("demo.conf:"), "{e}");
    }

    #[test]
    fn syntax_error_has_line() {
        let e = err("name = \"x\"\nspi = = 3\n");
        assert!(e.starts_with("demo.conf:2: "), "{e}");
    }

    #[test]
    fn bad_hex_key_names_key_and_never_echoes_it() {
        let e = err("name = \"x\"\n[[item]]\nspi = 1\nkey = \"zz11secret\"\n");
        assert!(
            e.starts_with("demo.conf:4: key `key`: key is not hex"),
            "{e}"
        );
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn a_key_without_quotes_is_never_echoed() {
        for value in [
            "112233445566778899",
            "0x11223344",
            "00112233aabbccdd",
            "aabbccdd11223344",
            "1.5e3",
            "true",
            "[11, 22]",
            "{ a = 11223344 }",
            "2026-01-01",
        ] {
            let text = format!("name = \"x\"\n[[item]]\nspi = 1\nkey = {value}\n");
            let e = err(&text);
            assert!(e.starts_with("demo.conf:4: key `key`: "), "{value}: {e}");
            let digits: String = value
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            for part in [value, &digits, "1122", "aabb", "1.5", "2026"] {
                assert!(!e.contains(part), "{value} echoed: {e}");
            }
        }
    }

    #[test]
    fn secret_key_debug_is_redacted() {
        let k = SecretKey::from_hex("00112233445566778899aabbccddeeff").unwrap();
        let d = format!("{k:?}");
        assert_eq!(d, "SecretKey(<redacted, 16 bytes>)");
        assert_eq!(k.expose()[15], 0xff);
    }

    #[test]
    fn key_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "0011\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretKey::from_file(&p).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(SecretKey::from_file(&p).unwrap().expose(), &[0x00, 0x11]);
    }

    #[test]
    fn an_inline_key_needs_a_private_file() {
        assert_inline_key_needs_private_file(
            "name = \"x\"\n[[item]]\nspi = 1\nkey = \"0011\"\n",
            |p| Source::read(p)?.refuse_shared_inline_key("item.key", 0),
            "item.key",
        );
    }

    #[test]
    fn error_at_key_finds_nth_assignment() {
        let src = Source::from_str("f.conf", "[[m]]\nspi = 1\n[[m]]\nspi = 1\n");
        let e = src.error_at_key("m.spi", 1, "duplicate SPI 1");
        assert_eq!(e.to_string(), "f.conf:4: key `m.spi`: duplicate SPI 1");
    }
}
