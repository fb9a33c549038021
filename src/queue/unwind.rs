//! Keeping the queue whole when user code panics half way through a step.
//!
//! User code runs inside a few steps (`K::hash`, `K::eq`, `K::clone`,
//! `CompactKey::pack`/`unpack`, and `Drop` of keys and items). Each step is
//! ordered so that such code runs either before the step changes anything
//! or after it has finished; where a step has already popped or removed
//! something when user code runs, an `Undo` finishes or reverts it during
//! the unwinding, so that a panic never leaks a claim, pins a key or loses
//! a queued entry (DESIGN.md section 3, "Panics in user code").

/// Runs `undo` when dropped, unless [`disarm`](Self::disarm)ed first: on
/// the path where the step it guards unwound.
pub(crate) struct Undo<F: FnOnce()> {
    undo: Option<F>,
}

impl<F: FnOnce()> Undo<F> {
    pub(crate) fn new(undo: F) -> Self {
        Self { undo: Some(undo) }
    }

    /// The step completed: nothing to undo. (Forgotten, not dropped, so
    /// that the normal path has no drop glue to call; `F` captures only
    /// references and copies.)
    #[inline(always)]
    pub(crate) fn disarm(self) {
        core::mem::forget(self);
    }
}

impl<F: FnOnce()> Drop for Undo<F> {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            undo();
        }
    }
}
