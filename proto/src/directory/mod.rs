//! The directory state machine (registry, views, leases).
