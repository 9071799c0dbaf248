pub mod demo;
pub mod import;
pub mod ingest;
pub mod produce;
