//! Sequences: the counters behind `serial` columns and `nextval`, shared by every session.

use std::collections::HashMap;
use std::sync::Mutex;

/// Every sequence's last value by name (`orders_id_seq`). Like Postgres's, a sequence is not
/// transactional: a value `nextval` gave is never given again while the server runs, even if
/// the write that used it failed. On recovery a sequence resumes after the greatest value its
/// column holds (Postgres resumes after the last value it gave, which may be greater).
///
/// The lock is held only to read or change one counter; the coordinator (which creates and
/// drops sequences with their tables) and sessions' `nextval` calls share it.
#[derive(Debug, Default)]
pub struct Sequences {
    last_values: Mutex<HashMap<String, i64>>,
}

impl Sequences {
    fn values(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        match self.last_values.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Makes a sequence (at 0: its first value is 1) unless it exists.
    pub fn create(&self, name: &str) {
        self.values().entry(name.to_string()).or_insert(0);
    }

    pub fn remove(&self, name: &str) {
        self.values().remove(name);
    }

    /// The sequence's next value; `None` if there is no such sequence.
    pub fn next(&self, name: &str) -> Option<i64> {
        let mut values = self.values();
        let value = values.get_mut(name)?;
        *value = value.saturating_add(1);
        Some(*value)
    }

    /// Moves the sequence past `value` if it is behind it.
    pub fn advance_past(&self, name: &str, value: i64) {
        if let Some(last) = self.values().get_mut(name) {
            *last = (*last).max(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Sequences;

    #[test]
    fn values_follow_one_another_and_recovery_moves_past_what_is_held() {
        let sequences = Sequences::default();
        assert_eq!(sequences.next("t_id_seq"), None);
        sequences.create("t_id_seq");
        assert_eq!(sequences.next("t_id_seq"), Some(1));
        assert_eq!(sequences.next("t_id_seq"), Some(2));
        sequences.advance_past("t_id_seq", 10);
        assert_eq!(sequences.next("t_id_seq"), Some(11));
        sequences.advance_past("t_id_seq", 3);
        assert_eq!(sequences.next("t_id_seq"), Some(12));
        sequences.create("t_id_seq");
        assert_eq!(sequences.next("t_id_seq"), Some(13));
        sequences.remove("t_id_seq");
        assert_eq!(sequences.next("t_id_seq"), None);
    }
}
