//! A query's memory pool inside a budget all the queries of a process
//! share (docs/security.md, "Limits of one query"). Each query has its own
//! limit; without a shared one, twenty concurrent queries (HTTP requests
//! and PostgreSQL connections alike) could each take their full limit.

use std::fmt::{Display, Formatter};
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation,
};

/// Every reservation counts against the query's own pool and the shared
/// one; it is refused when either is full.
#[derive(Debug)]
pub struct SharedLimitPool {
    own: GreedyMemoryPool,
    shared: Arc<GreedyMemoryPool>,
}

impl SharedLimitPool {
    pub fn new(limit: usize, shared: Arc<GreedyMemoryPool>) -> SharedLimitPool {
        SharedLimitPool {
            own: GreedyMemoryPool::new(limit),
            shared,
        }
    }
}

impl Display for SharedLimitPool {
    fn fmt(&self, f: &mut Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} within the process's {}", self.own, self.shared)
    }
}

impl MemoryPool for SharedLimitPool {
    fn name(&self) -> &str {
        "shared-limit"
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.own.grow(reservation, additional);
        self.shared.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.own.shrink(reservation, shrink);
        self.shared.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.own.try_grow(reservation, additional)?;
        if let Err(error) = self.shared.try_grow(reservation, additional) {
            self.own.shrink(reservation, additional);
            return Err(error);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.own.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::MemoryConsumer;

    use super::*;

    #[test]
    fn a_query_is_held_to_its_own_limit_and_the_shared_one() {
        let shared = Arc::new(GreedyMemoryPool::new(100));
        let first: Arc<dyn MemoryPool> = Arc::new(SharedLimitPool::new(60, shared.clone()));
        let second: Arc<dyn MemoryPool> = Arc::new(SharedLimitPool::new(60, shared.clone()));
        let a = MemoryConsumer::new("a").register(&first);
        let b = MemoryConsumer::new("b").register(&second);
        assert!(a.try_grow(61).is_err(), "over the query's own limit");
        a.try_grow(60).expect("within both");
        assert!(b.try_grow(50).is_err(), "over the shared limit");
        assert_eq!(
            second.reserved(),
            0,
            "a refused reservation leaves the query's pool as it was"
        );
        b.try_grow(40).expect("what is left of the shared limit");
        assert_eq!(shared.reserved(), 100);
        drop(a);
        assert_eq!(shared.reserved(), 40, "freed memory returns to both pools");
        b.try_grow(20).expect("room again");
    }
}
