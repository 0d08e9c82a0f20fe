//! (Skeleton: the helper that owns this file fills it in; see alerting/mod.rs.)
