//! Kafka's `SkimpyOffsetMap`: key → latest offset for the dirty part of a log, in a fixed
//! memory budget (`log.cleaner.dedupe.buffer.size` shared by `log.cleaner.threads`).
//!
//! A key is never stored, only a 128-bit hash of it (Kafka stores MD5's 16 bytes), so an entry
//! is 24 bytes whatever the key's size and the budget says exactly how many keys fit. Two keys
//! sharing a hash would make the older one's records look superseded; at 128 bits that needs
//! about 2^64 keys in one pass. The hash is two SipHash-1-3 with independent random keys: std
//! has nothing wider, and the map lives only for one clean, so process-random keys are fine.
//!
//! Open addressing with linear probing (modulo the table size, so any budget is used whole).
//! The table starts small and doubles up to the budget,
//! so a small log does not touch 128 MiB; once `load_factor` of the budget is used the map is
//! full and the clean stops mapping there (the rest of the log waits for the next pass).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Bytes one entry takes: Kafka's 16-byte hash plus an 8-byte offset.
pub const ENTRY_BYTES: usize = 24;
/// The table's first size when the budget allows it.
const INITIAL_SLOTS: usize = 1 << 12;

/// One slot: the key's hash and its latest offset; offset −1 marks an empty slot (offsets
/// are never negative).
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: [u64; 2],
    offset: i64,
}

const EMPTY: Slot = Slot {
    hash: [0, 0],
    offset: -1,
};

pub struct OffsetMap {
    slots: Vec<Slot>,
    /// Slots the budget allows; the table never grows past it.
    max_slots: usize,
    /// Entries in use.
    len: usize,
    /// Entries allowed: `load_factor` of `max_slots` (Kafka's `dupBufferLoadFactor`), so
    /// probes stay short even when full.
    max_entries: usize,
    /// The table grows when `len` reaches this.
    grow_at: usize,
    load_factor: f64,
    /// The highest offset mapped (Kafka's `latestOffset`): records above it were not looked
    /// at, so a clean keeps them whatever their key.
    latest_offset: i64,
    hashers: [RandomState; 2],
}

impl OffsetMap {
    /// A map holding at most `load_factor` × `budget_bytes / 24` keys (at least one).
    pub fn new(budget_bytes: usize, load_factor: f64) -> Self {
        let max_slots = (budget_bytes / ENTRY_BYTES).max(2);
        let load_factor = if load_factor.is_finite() && load_factor > 0.0 {
            load_factor.min(1.0)
        } else {
            0.9
        };
        let max_entries = ((max_slots as f64 * load_factor) as usize).clamp(1, max_slots - 1);
        let initial = INITIAL_SLOTS.min(max_slots);
        let mut map = OffsetMap {
            slots: vec![EMPTY; initial],
            max_slots,
            len: 0,
            max_entries,
            grow_at: 0,
            load_factor,
            latest_offset: -1,
            hashers: [RandomState::new(), RandomState::new()],
        };
        map.grow_at = map.grow_threshold();
        map
    }

    fn grow_threshold(&self) -> usize {
        if self.slots.len() >= self.max_slots {
            self.max_entries
        } else {
            ((self.slots.len() as f64 * self.load_factor) as usize).clamp(1, self.slots.len() - 1)
        }
    }

    /// Forgets every entry (a new clean), keeping the table's memory.
    pub fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.len = 0;
        self.latest_offset = -1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No room for another key.
    pub fn is_full(&self) -> bool {
        self.len >= self.max_entries
    }

    /// How many keys the budget allows.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }

    /// Bytes the table holds now.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * ENTRY_BYTES
    }

    pub fn latest_offset(&self) -> i64 {
        self.latest_offset
    }

    /// Raises the mapped range's end (Kafka's `updateLatestOffset`): offsets up to here were
    /// looked at even when they held no key (gaps, keyless records).
    pub fn update_latest_offset(&mut self, offset: i64) {
        self.latest_offset = self.latest_offset.max(offset);
    }

    fn hash(&self, key: &[u8]) -> [u64; 2] {
        [self.hashers[0].hash_one(key), self.hashers[1].hash_one(key)]
    }

    /// The slot holding `hash`, or the empty slot where it would go. Terminates because the
    /// table always keeps an empty slot (`max_entries` < slots).
    fn find(&self, hash: [u64; 2]) -> usize {
        let n = self.slots.len();
        let mut i = (hash[0] % n as u64) as usize;
        loop {
            let slot = &self.slots[i];
            if slot.offset < 0 || slot.hash == hash {
                return i;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Records `offset` as the latest for `key`. Returns false, changing nothing, when the map
    /// is full and `key` is new.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = self.hash(key);
        let mut i = self.find(hash);
        if self.slots[i].offset < 0 {
            if self.len >= self.max_entries {
                return false;
            }
            if self.len >= self.grow_at {
                self.grow();
                i = self.find(hash);
            }
            self.len += 1;
        }
        self.slots[i] = Slot { hash, offset };
        self.latest_offset = self.latest_offset.max(offset);
        true
    }

    /// The latest offset recorded for `key`, −1 when it is not in the map.
    pub fn get(&self, key: &[u8]) -> i64 {
        let slot = &self.slots[self.find(self.hash(key))];
        slot.offset
    }

    /// Doubles the table (capped at the budget) and reinserts every entry.
    fn grow(&mut self) {
        let target = (self.slots.len() * 2).min(self.max_slots);
        if target > self.slots.len() {
            let old = std::mem::replace(&mut self.slots, vec![EMPTY; target]);
            for slot in old.into_iter().filter(|s| s.offset >= 0) {
                let i = self.find(slot.hash);
                self.slots[i] = slot;
            }
        }
        self.grow_at = self.grow_threshold();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_offset_per_key_wins() {
        let mut map = OffsetMap::new(1 << 20, 0.9);
        assert!(map.put(b"a", 1));
        assert!(map.put(b"b", 2));
        assert!(map.put(b"a", 7));
        assert_eq!(map.get(b"a"), 7);
        assert_eq!(map.get(b"b"), 2);
        assert_eq!(map.get(b"c"), -1);
        assert_eq!(map.len(), 2);
        assert_eq!(map.latest_offset(), 7);
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_updates_known_ones() {
        // 10 slots → at most 9 keys at load factor 0.9.
        let mut map = OffsetMap::new(10 * ENTRY_BYTES, 0.9);
        let cap = map.capacity();
        assert!((1..10).contains(&cap), "{cap}");
        for i in 0..cap {
            assert!(map.put(format!("k{i}").as_bytes(), i as i64));
        }
        assert!(map.is_full());
        assert!(!map.put(b"new", 100));
        assert_eq!(map.get(b"new"), -1);
        assert!(map.put(b"k0", 200), "a known key still updates");
        assert_eq!(map.get(b"k0"), 200);
    }

    #[test]
    fn growing_keeps_every_entry() {
        let mut map = OffsetMap::new(1 << 24, 0.9);
        assert!(map.memory_bytes() < 1 << 20, "starts small");
        for i in 0..100_000i64 {
            assert!(map.put(&i.to_be_bytes(), i));
        }
        for i in 0..100_000i64 {
            assert_eq!(map.get(&i.to_be_bytes()), i);
        }
        assert!(map.memory_bytes() <= 1 << 24);
    }

    #[test]
    fn memory_never_exceeds_the_budget() {
        let budget = 1000 * ENTRY_BYTES + 5;
        let mut map = OffsetMap::new(budget, 0.9);
        let mut stored = 0;
        for i in 0..10_000i64 {
            if map.put(&i.to_be_bytes(), i) {
                stored += 1;
            }
        }
        assert!(map.memory_bytes() <= budget, "{}", map.memory_bytes());
        assert_eq!(stored, map.len());
        assert!(map.is_full());
        for i in 0..stored as i64 {
            assert_eq!(map.get(&i.to_be_bytes()), i);
        }
    }

    #[test]
    fn clear_forgets_everything() {
        let mut map = OffsetMap::new(1 << 16, 0.9);
        map.put(b"a", 3);
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.get(b"a"), -1);
        assert_eq!(map.latest_offset(), -1);
    }
}
