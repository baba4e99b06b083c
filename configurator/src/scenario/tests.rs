//! Unit tests of the scenario readers, writers and defaults.
