//! session (in progress).
