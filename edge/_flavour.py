"""Which build of semedge is installed: ``full`` (runtime, training, synthesis, the whole
default bundle) or ``device`` (the runtime and the default bundle's int8 models only).

The device build (``SEMEDGE_WHEEL=device``) rewrites this file in its wheel; see
``docs/arm.md``.
"""

FLAVOUR = "full"
