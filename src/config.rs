//! Appliance configuration: TOML file → validated, typed `Config`.
