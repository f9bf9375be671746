//! Total order: the [`sequencer::Sequencer`] (run by one node per group, on
//! its own thread in chorusd) and the members' [`log::OrderLog`].
//!
//! The sequencer learns, from its own host, which messages have arrived in
//! sender order, gives each the next global position, and multicasts ORDER
//! records `(sender, sender seq range) → global positions`. Because it only
//! orders a sender's messages in stream order, the total order is also FIFO
//! per sender. Members ack "I hold ORDER and DATA for every position up to
//! g" (cumulative); the minimum over the view is `stable`, announced in every
//! ORDER, which frees senders' buffers and releases `safe` messages.

pub mod delivery;
pub mod log;
pub mod repair;
pub mod sequencer;
pub mod slot;
