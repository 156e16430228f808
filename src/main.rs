//! The `otrs-exporter` binary: see [`otrs_exporter::cli`].

fn main() {
    otrs_exporter::allocator::limit_arenas();
    if let Err(e) = otrs_exporter::cli::main() {
        eprintln!("otrs-exporter: error: {e:#}");
        std::process::exit(1);
    }
}
