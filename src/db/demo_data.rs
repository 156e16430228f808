//! demo data (placeholder)
