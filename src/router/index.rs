//! Connections by master or by user. Most have one connection, kept inline with no allocation;
//! several are a set, so that closing one is O(1) however many one user holds.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    hash::Hash,
};

use super::messages::ConnId;

#[derive(Debug)]
enum Conns {
    One(ConnId),
    Many(HashSet<ConnId>),
}

#[derive(Debug)]
pub struct ConnIndex<K>(HashMap<K, Conns>);

impl<K> Default for ConnIndex<K> {
    fn default() -> Self {
        ConnIndex(HashMap::new())
    }
}

impl<K: Hash + Eq> ConnIndex<K> {
    pub fn insert(&mut self, key: K, id: ConnId) {
        match self.0.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(Conns::One(id));
            }
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Conns::One(only) if *only == id => {}
                Conns::One(only) => {
                    let first = *only;
                    slot.insert(Conns::Many(HashSet::from([first, id])));
                }
                Conns::Many(ids) => {
                    ids.insert(id);
                }
            },
        }
    }

    pub fn remove(&mut self, key: K, id: ConnId) {
        let Entry::Occupied(mut slot) = self.0.entry(key) else {
            return;
        };
        let empty = match slot.get_mut() {
            Conns::One(only) => *only == id,
            Conns::Many(ids) => {
                ids.remove(&id);
                ids.is_empty()
            }
        };
        if empty {
            slot.remove();
        }
    }

    /// The connections under `key`.
    pub fn get(&self, key: &K) -> impl Iterator<Item = ConnId> + '_ {
        let (one, many) = match self.0.get(key) {
            Some(Conns::One(id)) => (Some(*id), None),
            Some(Conns::Many(ids)) => (None, Some(ids.iter().copied())),
            None => (None, None),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// The connections under `key`, copied so that sending may change the index.
    pub fn ids(&self, key: &K) -> smallvec::SmallVec<[ConnId; 2]> {
        self.get(key).collect()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_then_many_then_none() {
        let mut index = ConnIndex::default();
        index.insert(7, 1);
        index.insert(7, 1);
        assert_eq!(index.ids(&7).as_slice(), &[1]);
        index.insert(7, 2);
        let mut both = index.ids(&7);
        both.sort_unstable();
        assert_eq!(both.as_slice(), &[1, 2]);
        index.remove(7, 1);
        assert_eq!(index.ids(&7).as_slice(), &[2]);
        index.remove(7, 2);
        assert_eq!(index.get(&7).count(), 0);
        assert!(index.0.is_empty());
        index.remove(8, 3);
    }
}
