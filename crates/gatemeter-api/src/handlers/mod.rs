pub mod health;
pub mod kpis;
pub mod sql;
