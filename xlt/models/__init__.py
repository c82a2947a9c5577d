"""Where models come from: local directories, built-in offline models, the model hub.

`resolve_model` is the one resolver every stage uses; `BUILTIN` lists the built-in offline
models and `build_builtin` builds one into the xlt cache (`$XLT_HOME`). Nothing heavy is
imported here: numpy/transformers load inside the functions that need them.
"""

from xlt.models.builtin import BUILTIN, BuiltinSpec, build_builtin, builtin_path, describe, is_current
from xlt.models.resolve import resolve_model

__all__ = ["BUILTIN", "BuiltinSpec", "build_builtin", "builtin_path", "describe", "is_current", "resolve_model"]
