//! Membership at a member: the views of each group ([`views::Views`]: the
//! installed one and those the directory proposed that wait for their
//! marker in the order) and the flush that moves the order to a new
//! sequencer when the old one is gone ([`flush`]).
//!
//! The view marker itself is a position of the order
//! ([`crate::order::slot::Slot::ViewMarker`]): every member installs a view
//! at the same position, which is what makes view changes virtually
//! synchronous.

pub mod flush;
pub mod views;
