//! Exporter settings.
