//! Reading one container's labels through the prefix: each value found once, each error
//! naming its label and the rule.

use super::*;

/// The labels of one container, read through the prefix.
pub(super) struct Labels<'a> {
    container: &'a ContainerInfo,
    prefix: &'a str,
    /// `(suffix, value)` of every `<prefix>.*` label, found in one pass: reading a label then
    /// costs no allocation (planning reads every container's labels on every wake-up).
    own: Vec<(&'a str, &'a str)>,
}

impl<'a> Labels<'a> {
    pub(super) fn new(container: &'a ContainerInfo, prefix: &'a str) -> Self {
        let own = container
            .labels
            .iter()
            .filter_map(|(k, v)| {
                let suffix = k.strip_prefix(prefix)?.strip_prefix('.')?;
                Some((suffix, v.as_str()))
            })
            .collect();
        Self {
            container,
            prefix,
            own,
        }
    }

    pub(super) fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    pub(super) fn get(&self, suffix: &str) -> Option<&'a str> {
        self.own.iter().find(|(k, _)| *k == suffix).map(|(_, v)| *v)
    }

    pub(super) fn err(&self, suffix: &str, value: &str, rule: impl Into<String>) -> LabelError {
        LabelError::new(&self.key(suffix), value, rule)
    }

    /// Exactly `true` or `false` in any case: `yes`, `1` or `on` are refused rather than guessed.
    pub(super) fn bool(&self, suffix: &str, value: &str) -> Result<bool, LabelError> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if v.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(self.err(suffix, value, "must be `true` or `false`"))
        }
    }

    /// A typo such as `certdock.ttll` would otherwise be silently ignored.
    pub(super) fn refuse_unknown(&self) -> Result<(), LabelError> {
        let dotted = format!("{}.", self.prefix);
        for (key, value) in &self.container.labels {
            let Some(suffix) = key.strip_prefix(&dotted) else {
                continue;
            };
            if !KNOWN.contains(&suffix) {
                return Err(LabelError::new(
                    key,
                    value,
                    format!(
                        "unknown label; {dotted}* labels are: {}",
                        KNOWN.map(|k| format!("{dotted}{k}")).join(", ")
                    ),
                ));
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(LabelError::new(
                    key,
                    value,
                    format!(
                        "the value is {} bytes long; at most {MAX_VALUE_LEN} are read",
                        value.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `<prefix>.name`, else the Compose service name, else the container name.
    pub(super) fn name(&self) -> Result<CertName, LabelError> {
        if let Some(v) = self.get("name") {
            return CertName::parse(v).map_err(|e| self.err("name", v, e.to_string()));
        }
        let (source, default) = match self.container.compose_service() {
            Some(s) => ("the Compose service name", s),
            None => ("the container name", self.container.name.as_str()),
        };
        // Compose and Docker names allow `_`, DNS names do not; only a derived default is
        // rewritten, an explicit label is taken as written.
        let normalised = default.trim_start_matches('/').replace('_', "-");
        CertName::parse(&normalised).map_err(|e| {
            self.err(
                "name",
                default,
                format!(
                    "{e}; the default comes from {source}: set {} explicitly",
                    self.key("name")
                ),
            )
        })
    }

    /// Comma separated; empty items (a trailing comma) are skipped.
    pub(super) fn extra_sans(&self, value: &str) -> Result<Vec<San>, LabelError> {
        let mut out = Vec::new();
        for item in value.split(',').filter(|s| !s.trim().is_empty()) {
            if out.len() == MAX_SANS {
                return Err(self.err(
                    "sans",
                    value,
                    format!("at most {MAX_SANS} names are accepted"),
                ));
            }
            let san = San::parse(item).map_err(|e| self.err("sans", value, e.to_string()))?;
            out.push(san);
        }
        Ok(out)
    }

    /// Every `Host()` name of every HTTP router rule, with the label it came from.
    pub(super) fn traefik_hosts(&self) -> Result<Vec<(DnsName, String)>, LabelError> {
        let mut out = Vec::new();
        for (key, rule) in &self.container.labels {
            let Some(router) = key
                .strip_prefix(TRAEFIK_ROUTERS)
                .and_then(|r| r.strip_suffix(".rule"))
            else {
                continue;
            };
            if router.is_empty() || router.contains('.') {
                continue;
            }
            if rule.len() > MAX_VALUE_LEN {
                return Err(LabelError::new(
                    key,
                    rule,
                    format!("longer than {MAX_VALUE_LEN} bytes"),
                ));
            }
            let hosts = host_rule::hosts(rule).map_err(|e| LabelError::new(key, rule, e))?;
            for host in hosts {
                if out.len() == MAX_SANS {
                    return Err(LabelError::new(
                        key,
                        rule,
                        format!(
                            "more than {MAX_SANS} Host() names in this container's router rules"
                        ),
                    ));
                }
                let name = DnsName::parse(&host).map_err(|e| {
                    LabelError::new(key, rule, format!("a Host() name is refused: {e}"))
                })?;
                out.push((name, key.clone()));
            }
        }
        Ok(out)
    }

    /// Blames the label that brought the first refused name.
    pub(super) fn check_policy(
        &self,
        policy: &NamePolicy,
        sans: &SanList,
        name: &CertName,
    ) -> Result<(), LabelError> {
        let Err(err) = policy.check(&sans.sans) else {
            return Ok(());
        };
        let sans_value = || self.get("sans").unwrap_or_default();
        match err {
            // Only a name that is not a DNS name, alone, leaves the list empty.
            PolicyError::NoNames => Err(self.err(
                "name",
                name.as_str(),
                format!(
                    "{err}: {name} is not a DNS name, so it is only the subject CN; add names with {}",
                    self.key("sans")
                ),
            )),
            PolicyError::TooManyNames { .. } if self.get("sans").is_some() => {
                Err(self.err("sans", sans_value(), err.to_string()))
            }
            PolicyError::TooManyNames { .. } => {
                Err(self.err("traefik.hosts", "true", err.to_string()))
            }
            // `check` stops at the first refused name; the same name, checked alone, tells its label.
            _ => {
                let origin = sans
                    .sans
                    .iter()
                    .zip(&sans.origins)
                    .find(|(san, _)| policy.check(std::slice::from_ref(*san)).is_err())
                    .map_or(&Origin::Sans, |(_, o)| o);
                Err(match origin {
                    Origin::Name => self.err("name", name.as_str(), err.to_string()),
                    Origin::Sans => self.err("sans", sans_value(), err.to_string()),
                    Origin::Router(key) => {
                        let rule = self.container.labels.get(key).map(String::as_str);
                        LabelError::new(key, rule.unwrap_or_default(), err.to_string())
                    }
                })
            }
        }
    }
}
