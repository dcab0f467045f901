//! LAVA job definitions: submission YAML → validated, typed `JobDefinition` (pure, no I/O).
