//! Pending deadlines in one structure ordered by time, so one timer serves any number of assignments.

use std::collections::{BTreeSet, HashMap};

use crate::domain::AssignmentId;

#[derive(Debug, Default)]
pub struct ExpiryQueue {
    by_deadline: BTreeSet<(i64, AssignmentId)>,
    deadline_of: HashMap<AssignmentId, i64>,
}

impl ExpiryQueue {
    pub fn arm(&mut self, assignment_id: AssignmentId, deadline_ms: i64) {
        if let Some(old) = self.deadline_of.insert(assignment_id, deadline_ms) {
            self.by_deadline.remove(&(old, assignment_id));
        }
        self.by_deadline.insert((deadline_ms, assignment_id));
    }

    pub fn disarm(&mut self, assignment_id: AssignmentId) {
        if let Some(deadline) = self.deadline_of.remove(&assignment_id) {
            self.by_deadline.remove(&(deadline, assignment_id));
        }
    }

    pub fn next_deadline(&self) -> Option<i64> {
        self.by_deadline.first().map(|&(deadline, _)| deadline)
    }

    /// Removes and returns the assignments whose deadline is at or before `now_ms`.
    pub fn pop_due(&mut self, now_ms: i64) -> Vec<AssignmentId> {
        let mut due = Vec::new();
        while let Some(&(deadline, id)) = self.by_deadline.first() {
            if deadline > now_ms {
                break;
            }
            self.by_deadline.pop_first();
            self.deadline_of.remove(&id);
            due.push(id);
        }
        due
    }

    pub fn len(&self) -> usize {
        self.deadline_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadline_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_only_due_deadlines_in_order_and_honours_disarm_and_rearm() {
        let id = AssignmentId;
        let mut q = ExpiryQueue::default();
        q.arm(id(1), 300);
        q.arm(id(2), 100);
        q.arm(id(3), 200);
        q.arm(id(4), 100);
        q.disarm(id(3));
        q.arm(id(1), 150);
        assert_eq!(q.next_deadline(), Some(100));
        assert_eq!(q.pop_due(99), vec![]);
        assert_eq!(q.pop_due(150), vec![id(2), id(4), id(1)]);
        assert!(q.is_empty());
    }
}
