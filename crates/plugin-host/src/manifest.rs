//! The plugin manifest: what a plugin is (name, version, kind), which API version it targets,
//! which hosts it may call and which settings it reads. It travels inside the component as the
//! JSON custom section `botyard-plugin` (written by `botyard_plugin_sdk::manifest!()`), so one
//! `.wasm` file is the whole plugin; a side file can override it (`Manifest::from_json`).

use serde::{Deserialize, Serialize};

/// The API versions this host can run, newest last. A new WIT folder adds one entry and an
/// adapter; entries are never removed while plugins built for them may exist.
pub const SUPPORTED_APIS: &[&str] = &["botyard-plugin@0.1.0"];

/// The custom section holding the manifest JSON.
pub const MANIFEST_SECTION: &str = "botyard-plugin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// A custom app (`custom-app` world), called by `App()`.
    App,
    /// A channel connector (`channel-connector` world).
    Channel,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::App => "app",
            PluginKind::Channel => "channel",
        }
    }
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::App => "custom-app",
            PluginKind::Channel => "channel-connector",
        }
    }
}

/// A configuration value or secret the plugin reads by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub required: bool,
    /// Used when the installation sets no value (config only; secrets have no default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    /// `botyard-plugin@MAJOR.MINOR.PATCH`: the WIT package the component was built against.
    pub api: String,
    #[serde(default)]
    pub description: String,
    /// Hosts the plugin needs (see [`crate::outbound::HostPattern`]); an installation may add more.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub config: Vec<Setting>,
    #[serde(default)]
    pub secrets: Vec<Setting>,
}

impl Manifest {
    pub fn from_json(text: &[u8]) -> Result<Manifest, String> {
        let m: Manifest =
            serde_json::from_slice(text).map_err(|e| format!("invalid plugin manifest: {e}"))?;
        m.validate()?;
        Ok(m)
    }

    /// The manifest embedded in a component, if any. Looks through nested modules too, since
    /// the Rust toolchain keeps the section inside the component's core module.
    pub fn from_wasm(wasm: &[u8]) -> Result<Manifest, String> {
        let mut found = None;
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            let payload = payload.map_err(|e| format!("not a WebAssembly component: {e}"))?;
            if let wasmparser::Payload::CustomSection(s) = payload
                && s.name() == MANIFEST_SECTION
            {
                found = Some(s.data().to_vec());
            }
        }
        match found {
            Some(bytes) => Manifest::from_json(&bytes),
            None => Err(format!(
                "the component has no `{MANIFEST_SECTION}` manifest section; build it with \
                 `botyard_plugin_sdk::manifest!()` or pass the manifest file"
            )),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok_name {
            return Err(format!(
                "invalid plugin name {:?}: use 1-64 of a-z, 0-9, '-', '_'",
                self.name
            ));
        }
        if self.version.is_empty() || self.version.len() > 64 {
            return Err("invalid plugin version".into());
        }
        check_api(&self.api)?;
        for h in &self.allowed_hosts {
            crate::outbound::HostPattern::parse(h)?;
        }
        Ok(())
    }

    pub fn config_setting(&self, name: &str) -> Option<&Setting> {
        self.config.iter().find(|s| s.name == name)
    }
    pub fn secret_setting(&self, name: &str) -> Option<&Setting> {
        self.secrets.iter().find(|s| s.name == name)
    }
}

/// `Ok` when this host runs `api`, else a message naming what it does run.
pub fn check_api(api: &str) -> Result<(), String> {
    if SUPPORTED_APIS.contains(&api) {
        return Ok(());
    }
    Err(format!(
        "unsupported plugin API version `{api}`: this botyard supports {}; rebuild the plugin \
         against one of those WIT packages",
        SUPPORTED_APIS.join(", ")
    ))
}

/// The API string of a WIT interface import such as `botyard:plugin/host@0.1.0`.
pub fn api_of_import(name: &str) -> Option<String> {
    let rest = name.strip_prefix("botyard:plugin/")?;
    let version = rest
        .split_once('@')
        .map(|(_, v)| v)
        .unwrap_or("unversioned");
    Some(format!("botyard-plugin@{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_api_is_rejected_with_the_supported_list() {
        let err = check_api("botyard-plugin@9.0.0").unwrap_err();
        assert!(err.contains("botyard-plugin@9.0.0") && err.contains("botyard-plugin@0.1.0"));
        assert_eq!(
            api_of_import("botyard:plugin/kv@0.1.0").unwrap(),
            "botyard-plugin@0.1.0"
        );
        assert_eq!(api_of_import("wasi:io/poll@0.2.0"), None);
    }

    #[test]
    fn names_are_checked() {
        let m = Manifest {
            name: "Bad Name".into(),
            version: "1".into(),
            kind: PluginKind::App,
            api: SUPPORTED_APIS[0].into(),
            description: String::new(),
            allowed_hosts: vec![],
            config: vec![],
            secrets: vec![],
        };
        assert!(m.validate().is_err());
    }
}
