//! The sun's position at a pole: dusk and dawn for the streetlight rules.
//!
//! (Skeleton: the helper that owns this file fills it in.)
