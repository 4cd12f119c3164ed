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
        toml::from_str(&self.text).map_err(|e| self.toml_error(&self.text, &e))
    }

    /// Parses the whole file into `T`, finding every error rather than
    /// the first: toml and serde stop at one, so the line of each error
    /// is blanked (line numbers stay) and the text parsed again. The keys
    /// so dropped are remembered: the checks after serde say nothing
    /// more about them (`Findings::push`). A table header, or an error
    /// without a line, ends the search (blanking a header would move its
    /// keys into the table above). `None` if the file never parsed.
    pub fn parse_all<T: DeserializeOwned>(&self) -> (Option<T>, Findings) {
        let mut text = Zeroizing::new(self.text.to_string());
        let mut found = Findings::default();
        for _ in 0..MAX_ERRORS {
            let e = match toml::from_str::<T>(&text) {
                Ok(v) => {
                    found.parsed = true;
                    return (Some(v), found);
                }
                Err(e) => self.toml_error(&text, &e),
            };
            let line = e.line;
            let key = e.key.clone();
            // A required key whose line was dropped: reported already.
            if key.as_ref().is_some_and(|k| found.blanked.contains(k)) {
                break;
            }
            found.errors.push(e);
            let Some(line) = line else { break };
            let Some(blanked) = blank_line(&mut text, line) else {
                break;
            };
            found
                .blanked
                .extend(key.or_else(|| blanked.split_once('=').map(|(k, _)| k.trim().to_owned())));
        }
        (None, found)
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

    fn toml_error(&self, text: &str, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let line = span.as_ref().map(|s| {
            let at = s.start.min(text.len());
            text.as_bytes()[..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        });
        let raw = e.message().trim().to_owned();
        // The key: a backquoted field name in serde's own messages
        // ("unknown field `x`", "missing field `x`"), else the key whose
        // value the span points at (`key = <value>` on that line).
        let key = backquoted(&raw).or_else(|| {
            let s = span.as_ref()?;
            let start = text[..s.start.min(text.len())]
                .rfind('\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            let line_text = &text[start..];
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

/// At most this many errors are reported from one file.
const MAX_ERRORS: usize = 100;

/// Empties 1-based `line` of `text` (its newline stays), unless it is
/// blank already or a table header; returns what it held.
fn blank_line(text: &mut Zeroizing<String>, line: usize) -> Option<Zeroizing<String>> {
    let start = if line == 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let held = text[start..end].trim();
    if held.is_empty() || held.starts_with('[') {
        return None;
    }
    let held = Zeroizing::new(held.to_owned());
    text.replace_range(start..end, "");
    Some(held)
}

/// Every error found in one configuration file: serde's (all of them,
/// see [`Source::parse_all`]) and the checks' after it.
#[derive(Debug, Default)]
pub struct Findings {
    errors: Vec<ConfigError>,
    /// Keys whose lines were dropped after a parse error.
    blanked: Vec<String>,
    /// serde is done: what is pushed now comes from the checks.
    parsed: bool,
}

impl Findings {
    /// Keeps a check's error, unless it is about a key already reported
    /// as unparsable (its value was dropped, so the check saw a default).
    pub fn push(&mut self, e: ConfigError) {
        let about_blanked = self.blanked.iter().any(|b| {
            let leaf = b.rsplit('.').next().unwrap_or(b);
            e.key
                .as_deref()
                .is_some_and(|k| k.rsplit('.').next() == Some(leaf))
                || e.message.contains(&format!("`{leaf}`"))
        });
        if !(self.parsed && about_blanked) {
            self.errors.push(e);
        }
    }

    /// The value of a check that may fail; its error is kept.
    pub fn ok<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.push(e)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors by line (errors about the whole file first). Never
    /// empty: a caller that found a value missing reports at least that.
    pub fn into_errors(mut self, file: &Path) -> Vec<ConfigError> {
        if self.errors.is_empty() {
            self.errors.push(ConfigError {
                file: file.to_owned(),
                line: None,
                key: None,
                message: "invalid configuration".into(),
            });
        }
        self.errors.sort_by_key(|e| e.line.unwrap_or(0));
        self.errors
    }

    /// `value` if nothing was found, else every error.
    pub fn finish<T>(self, file: &Path, value: T) -> Result<T, Vec<ConfigError>> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self.into_errors(file))
        }
    }
}

/// Errors as the daemons print them: one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The first of several errors (for callers that stop at one).
pub fn first(errors: Vec<ConfigError>) -> ConfigError {
    errors.into_iter().next().unwrap_or_else(|| ConfigError {
        file: PathBuf::new(),
        line: None,
        key: None,
        message: "invalid configuration".into(),
    })
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
        if !s.len().is_multiple_of(2) {
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
    fn parse_all_finds_every_error_and_keeps_line_numbers() {
        let src = Source::from_str(
            "demo.conf",
            "name = 3\nnmae = 1\n[[item]]\nspi = \"x\"\nkey = 12345678\n",
        );
        let (v, found) = src.parse_all::<Demo>();
        assert!(v.is_none(), "a required key was unparsable");
        let e: Vec<String> = found
            .into_errors(&src.file)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(e[0].starts_with("demo.conf:1: key `name`: "), "{e:#?}");
        assert!(e[1].starts_with("demo.conf:2: key `nmae`: unknown field"));
        assert!(e[2].starts_with("demo.conf:4: key `spi`: expected an integer"));
        assert!(e[3].starts_with("demo.conf:5: key `key`: "));
        assert!(!e.concat().contains("12345678"), "{e:#?}");
    }

    #[test]
    fn checks_say_nothing_more_about_a_key_already_reported() {
        let src = Source::from_str("demo.conf", "name = \"x\"\n[[item]]\nspi = 1\nkey = 5\n");
        let (v, mut found) = src.parse_all::<Demo>();
        assert!(v.is_some(), "`key` is optional: parsed without it");
        found.push(src.error_at_key("item.key", 0, "needs a key"));
        found.push(src.error("needs `key` or `key_file`"));
        found.push(src.error_at_key("item.spi", 0, "SPI 1 is reserved"));
        let e = found.into_errors(&src.file);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert_eq!(
            e[0].to_string(),
            "demo.conf:3: key `item.spi`: SPI 1 is reserved"
        );
        assert!(e[1].to_string().starts_with("demo.conf:4: key `key`: "));
    }

    #[test]
    fn error_at_key_finds_nth_assignment() {
        let src = Source::from_str("f.conf", "[[m]]\nspi = 1\n[[m]]\nspi = 1\n");
        let e = src.error_at_key("m.spi", 1, "duplicate SPI 1");
        assert_eq!(e.to_string(), "f.conf:4: key `m.spi`: duplicate SPI 1");
    }
}
