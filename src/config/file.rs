//! TOML configuration file loading (placeholder; being written).
use super::Config;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

pub fn load_file(_path: &Path) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(Vec::new()))
}

pub fn parse_str(_text: &str, _file_name: &str) -> Result<Config, ConfigErrors> {
    Err(ConfigErrors(Vec::new()))
}
