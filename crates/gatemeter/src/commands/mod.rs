pub mod demo;
pub mod import;
pub mod ingest;
pub mod kpis;
pub mod produce;
pub mod query;
pub mod scorecard;
pub mod serve;
