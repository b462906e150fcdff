"""The config presets (NAME.yaml), installed as the data package ``masf.presets``."""
