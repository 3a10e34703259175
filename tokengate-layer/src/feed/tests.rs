//! The feed against a scripted tokengate.
