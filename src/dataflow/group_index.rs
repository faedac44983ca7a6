//! Group index: group keys (`arrow-row` bytes) → dense slot numbers, the keys kept in one arena.
//!
//! A hash map of boxed keys costs a heap allocation and about 25 bytes of table per group before
//! the table's growth slack; here the table holds 4-byte slot numbers and every key lives in one
//! byte arena, so a group with an integer key costs about 18 bytes of index.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::error::{DataflowError, ExecutionError};

/// Keys longer than this (16 MiB) cannot be indexed; the arena holds up to 1 TiB of keys.
const LONGEST_KEY: usize = (1 << 24) - 1;
const LARGEST_ARENA: usize = (1 << 40) - 1;

#[derive(Default)]
pub struct GroupIndex {
    /// Slot numbers, found by hashing and comparing their keys.
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Every live key's bytes, and the bytes of released keys until the next compaction.
    arena: Vec<u8>,
    /// Per slot, where its key is in the arena: offset in the high 40 bits, length in the low
    /// 24. A free slot keeps its old span, counted in `dead_bytes`.
    spans: Vec<u64>,
    free: Vec<u32>,
    dead_bytes: usize,
}

impl GroupIndex {
    fn key_at<'a>(arena: &'a [u8], spans: &[u64], slot: u32) -> &'a [u8] {
        let span = spans[slot as usize];
        let offset = (span >> 24) as usize;
        let length = (span & LONGEST_KEY as u64) as usize;
        &arena[offset..offset + length]
    }

    /// The key of a live slot.
    pub fn key(&self, slot: usize) -> &[u8] {
        Self::key_at(&self.arena, &self.spans, slot as u32)
    }

    pub fn get(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |&slot| {
                Self::key_at(&self.arena, &self.spans, slot) == key
            })
            .map(|&slot| slot as usize)
    }

    /// The slot of `key`, and whether it was just created (a freed slot is reused first, so
    /// slot numbers stay dense). Slot numbers never exceed the number of slots ever live at
    /// once.
    pub fn get_or_insert(&mut self, key: &[u8]) -> Result<(usize, bool), DataflowError> {
        if let Some(slot) = self.get(key) {
            return Ok((slot, false));
        }
        if key.len() > LONGEST_KEY || self.arena.len() + key.len() > LARGEST_ARENA {
            return Err(ExecutionError::Internal(format!(
                "a group key of {} bytes does not fit the group index",
                key.len()
            ))
            .into());
        }
        let span = ((self.arena.len() as u64) << 24) | key.len() as u64;
        self.arena.extend_from_slice(key);
        let slot = match self.free.pop() {
            Some(slot) => {
                // The slot's old key stays in the arena, dead, until the next compaction.
                self.spans[slot as usize] = span;
                slot
            }
            None => {
                let slot = u32::try_from(self.spans.len()).map_err(|_| {
                    DataflowError::from(ExecutionError::Internal(
                        "more than 4 billion groups".into(),
                    ))
                })?;
                self.spans.push(span);
                slot
            }
        };
        let hash = self.hasher.hash_one(key);
        let (arena, spans, hasher) = (&self.arena, &self.spans, &self.hasher);
        self.table.insert_unique(hash, slot, |&slot| {
            hasher.hash_one(Self::key_at(arena, spans, slot))
        });
        Ok((slot as usize, true))
    }

    /// Releases `key`'s slot for reuse; returns it.
    pub fn remove(&mut self, key: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let (arena, spans) = (&self.arena, &self.spans);
        let entry = self
            .table
            .find_entry(hash, |&slot| Self::key_at(arena, spans, slot) == key)
            .ok()?;
        let (slot, _) = entry.remove();
        self.free.push(slot);
        self.dead_bytes += key.len();
        if self.dead_bytes > 4096 && self.dead_bytes * 2 > self.arena.len() {
            self.compact();
        }
        Some(slot as usize)
    }

    /// Copies the live keys into a fresh arena, dropping the released ones.
    fn compact(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.dead_bytes);
        let mut free = vec![false; self.spans.len()];
        for &slot in &self.free {
            free[slot as usize] = true;
        }
        for (slot, span) in self.spans.iter_mut().enumerate() {
            let length = (*span & LONGEST_KEY as u64) as usize;
            if free[slot] {
                *span = 0;
                continue;
            }
            let offset = (*span >> 24) as usize;
            let moved = ((arena.len() as u64) << 24) | length as u64;
            arena.extend_from_slice(&self.arena[offset..offset + length]);
            *span = moved;
        }
        self.arena = arena;
        self.dead_bytes = 0;
    }

    /// The number of live groups.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every live group: its key and slot.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], usize)> {
        self.table
            .iter()
            .map(|&slot| (Self::key_at(&self.arena, &self.spans, slot), slot as usize))
    }

    /// Forgets every group.
    pub fn clear(&mut self) {
        *self = Self {
            hasher: self.hasher.clone(),
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::GroupIndex;
    use std::collections::HashMap;

    /// Random inserts and removals agree with a plain map, through reuse and compaction.
    #[test]
    fn agrees_with_a_hash_map() {
        let mut index = GroupIndex::default();
        let mut expected: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut state = 7u64;
        for step in 0..200_000u64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("key-{}", (state >> 33) % 5_000).into_bytes();
            if step % 3 == 0 {
                assert_eq!(index.remove(&key), expected.remove(&key));
            } else {
                let (slot, created) = index.get_or_insert(&key).expect("insert");
                match expected.get(&key) {
                    Some(&known) => assert!(!created && known == slot),
                    None => {
                        assert!(created);
                        expected.insert(key.clone(), slot);
                    }
                }
                assert_eq!(index.key(slot), key.as_slice());
            }
        }
        assert_eq!(index.len(), expected.len());
        for (key, slot) in index.iter() {
            assert_eq!(expected.get(key), Some(&slot));
        }
    }
}
