"""What a trial is asked to do: the typed config, the paper's readings, the variants, the presets.

- ``schema``: the dataclasses (every number of MASF-SPEC.md is a default there), typed
  ``--set`` overrides, range checks, the resolved config read back;
- ``readings``: named overlays where the paper can be read two ways (``model.reading``);
- ``variants``: the ablation variants and baselines, read from ``ablations/variants.yaml``;
- ``build``: ``build_config``: defaults <- reading <- preset <- variant <- overrides.

May import: ``masf.errors``, ``masf.resources`` and its own modules; nothing else of masf. The
modules import in one direction (schema <- readings, variants <- build), so there is no circle.
The names below are the package's public face (``from masf.config import build_config``).
"""

from masf.config.build import build_config, list_presets, preset_path
from masf.config.schema import (AMFDConfig, Config, ConfigError, DataConfig, EvalConfig, ModelConfig, PaDiMConfig,
                                PatchCoreConfig, SAMBConfig, SDMConfig, TeacherConfig, TrainConfig, TTSAConfig,
                                UGHFConfig, config_from_dict, flatten, load_config_file, nest, parse_override,
                                read_yaml, validate)

__all__ = [
    "AMFDConfig", "Config", "ConfigError", "DataConfig", "EvalConfig", "ModelConfig", "PaDiMConfig", "PatchCoreConfig",
    "SAMBConfig", "SDMConfig", "TeacherConfig", "TrainConfig", "TTSAConfig", "UGHFConfig", "build_config",
    "config_from_dict", "flatten", "list_presets", "load_config_file", "nest", "parse_override", "preset_path",
    "read_yaml", "validate",
]
