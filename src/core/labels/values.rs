//! The typed values of the delivery labels: delivery mode, container path, owner, reload.

use std::fmt;

/// Where the issued files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Copied into the container under [`CertSpec::path`](super::CertSpec::path).
    Container,
    /// Written under the output directory, `certs/NAME/`.
    Volume,
    /// Issued and kept, delivered nowhere (e.g. only for Traefik's `tls.certificates`).
    None,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Container => "container",
            Delivery::Volume => "volume",
            Delivery::None => "none",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An absolute directory inside a container: no `.`/`..`/empty components, no trailing `/`,
/// printable ASCII without spaces, quotes or backslashes, so it is safe in a tar header, a
/// log line or a shell command alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerPath(String);

/// The longest `<prefix>.path` accepted; far beyond any real directory, short enough for tar.
pub const MAX_PATH_LEN: usize = 256;

impl ContainerPath {
    pub const DEFAULT: &'static str = "/run/certdock";

    pub fn parse(input: &str) -> Result<Self, String> {
        if input.len() > MAX_PATH_LEN {
            return Err(format!(
                "a path may have at most {MAX_PATH_LEN} characters, this one has {}",
                input.len()
            ));
        }
        if let Some(c) = input
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '`' | '\\'))
        {
            return Err(format!(
                "a path may contain only printable ASCII without spaces, quotes or backslashes, not {c:?}"
            ));
        }
        let Some(rest) = input.strip_prefix('/') else {
            return Err("the path must be absolute (start with '/')".into());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err("the path may not be '/' itself".into());
        }
        for component in rest.split('/') {
            match component {
                "" => return Err("the path may not contain empty components ('//')".into()),
                "." | ".." => {
                    return Err("the path may not contain '.' or '..' components".into());
                }
                _ => {}
            }
        }
        // Kernel filesystems: a copy there is never what the user meant and can only do harm.
        let first = rest.split('/').next().unwrap_or_default();
        if matches!(first, "proc" | "sys" | "dev") {
            return Err(format!("the path may not lie under /{first}"));
        }
        Ok(Self(format!("/{rest}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ContainerPath {
    fn default() -> Self {
        Self(Self::DEFAULT.to_string())
    }
}

impl fmt::Display for ContainerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Numeric owner of delivered files (names would need the container's `/etc/passwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub fn parse(input: &str) -> Result<Self, String> {
        let rule = || "owner must be uid:gid, two decimal numbers below 2^32 (e.g. 1000:1000)";
        let (uid, gid) = input
            .trim()
            .split_once(':')
            .ok_or_else(|| rule().to_string())?;
        Ok(Self {
            uid: parse_id(uid).ok_or_else(|| rule().to_string())?,
            gid: parse_id(gid).ok_or_else(|| rule().to_string())?,
        })
    }
}

/// Plain digits only: `u32::from_str` would also take `+5`.
fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// What to do to the container after every delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reload {
    Signal(Signal),
    Restart,
}

impl Reload {
    pub fn parse(input: &str) -> Result<Self, String> {
        if input.trim().eq_ignore_ascii_case("restart") {
            return Ok(Reload::Restart);
        }
        Signal::parse(input).map(Reload::Signal)
    }
}

impl fmt::Display for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reload::Signal(s) => f.write_str(s.name()),
            Reload::Restart => f.write_str("restart"),
        }
    }
}

/// The signals a reload may send. SIGKILL and SIGSTOP are absent on purpose: a reload must
/// never kill or freeze the process it is meant to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Hup,
    Int,
    Quit,
    Term,
    Usr1,
    Usr2,
    Winch,
}

impl Signal {
    pub const ALL: [Signal; 7] = [
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
        Signal::Term,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Winch,
    ];

    /// The name Docker's kill API takes, e.g. `SIGHUP`.
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Quit => "SIGQUIT",
            Signal::Term => "SIGTERM",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
            Signal::Winch => "SIGWINCH",
        }
    }

    /// `SIGHUP` or `HUP`, any case.
    pub fn parse(input: &str) -> Result<Self, String> {
        let upper = input.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if matches!(bare, "KILL" | "STOP") {
            return Err(format!(
                "SIG{bare} is refused: a reload must not kill or stop the container; use `restart` to restart it"
            ));
        }
        Signal::ALL
            .into_iter()
            .find(|s| &s.name()[3..] == bare)
            .ok_or_else(|| {
                let names: Vec<&str> = Signal::ALL.iter().map(Signal::name).collect();
                format!("reload must be `restart` or one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
