"""The benchmark suites (NAME.yaml), installed as the data package ``masf.suites``."""
