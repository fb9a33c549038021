//! A bounded FIFO queue for hot paths where many threads report "done" to
//! one sender, with a lock-free key store for plain-data keys.
//!
//! An offer of a key that is already pending is **coalesced** into the
//! pending copy; other items **pass through** in order, in the same FIFO.
//! Keys are stored compactly and built into full values only when they are
//! **taken**. Keys taken with a **lease** stay deduplicated until the sender
//! acknowledges them, and come back if the send failed. Beside the queue, a
//! [`ResendGate`] tells a coordinator when to re-send a fan-out request.
//!
//! Coming from a channel: its `send` is [`offer_key`](CoalescingQueue::offer_key)
//! for a key that should coalesce, and [`offer`](CoalescingQueue::offer) for
//! a pass-through item, which never does. When keys and items are the same
//! type (`CoalescingQueue<String, String>`) both compile: an `offer` of a
//! key queues a copy every time.
//!
//! # Why
//!
//! A coordinator asks thousands of workers to do something; each answers
//! "done", and re-sends the answer until it is acknowledged. With a plain
//! channel, a slow sender makes the same answer pile up thousands of times,
//! each a freshly built message: memory grows with the number of *offers*.
//! Here it grows with the number of *distinct* pending answers, and is fixed
//! up front by the capacity.
//!
//! # Example
//!
//! ```
//! use coalescing_queue::CoalescingQueue;
//! use std::{sync::Arc, thread, time::Duration};
//!
//! /// The compact form of a "done" answer.
//! #[derive(Clone, PartialEq, Eq, Hash, Debug)]
//! struct Done { table: u64, job: u64 }
//!
//! let queue = Arc::new(CoalescingQueue::<Done, String>::new(1024));
//!
//! // Workers answer, and re-send; duplicates of a pending answer coalesce.
//! let workers: Vec<_> = (0..4)
//!     .map(|w| {
//!         let queue = queue.clone();
//!         thread::spawn(move || {
//!             for _resend in 0..3 {
//!                 for table in 0..10 {
//!                     queue.offer_key(Done { table: w * 10 + table, job: 7 }).unwrap();
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! for worker in workers {
//!     worker.join().unwrap();
//! }
//! queue.close();
//!
//! // The sender drains in batches and builds each message only now.
//! let mut batch = Vec::new();
//! let mut sent = 0;
//! while queue.take_batch(&mut batch, 64, Duration::from_millis(1)) > 0 {
//!     for entry in batch.drain(..) {
//!         let message = entry.into_item(|done| format!("table {} done", done.table));
//!         assert!(message.ends_with("done"));
//!         sent += 1;
//!     }
//! }
//! // 120 offers; nothing was taken before the close, so each of the 40
//! // tables was delivered exactly once.
//! assert_eq!(sent, 40);
//! ```
//!
//! # Guarantees
//!
//! * **G1 No lost offer.** An offer that returned `Ok` is followed by a take
//!   of that key that returns *after* the offer began: what the receiver
//!   builds from the key is at least as new as the offer. With
//!   [`InFlightPolicy::Requeue`] (the default), an offer absorbed by a copy
//!   in flight is delivered once more after that lease is acked.
//! * **G2 Coalescing.** At most one copy of a key is pending: queued, or in
//!   flight. However many times it is offered meanwhile, it is delivered once
//!   (plus once after the ack, under `Requeue`).
//! * **G3 Bounded.** Queued plus in-flight entries never exceed the
//!   capacity. Memory is fixed when the queue is built, whatever the offer
//!   rate; a duplicate offer needs no slot and is coalesced even when full.
//! * **G4 FIFO.** Entries leave in the order they entered. A coalesced offer
//!   takes the place of the pending copy; a nacked or re-queued entry goes to
//!   the tail.
//! * **G5 No lost wake-up.** A blocked taker wakes when an entry arrives or
//!   the queue closes; a blocked offerer wakes when a slot frees up or the
//!   queue closes, and then gets its value back.
//! * **G6 No leaked reservation.** Once everything is taken and every lease
//!   acked, no key is pending and no slot is claimed. A dropped lease is a
//!   nack: it never loses an entry and never pins a key.
//! * **G7 No allocation after build.** The ring, the key table and the
//!   waiters are allocated at full size when the queue is built; no offer,
//!   take, lease or close allocates in them afterwards, full and churning
//!   included. (A leased take hands out a clone of its key, which allocates
//!   if the key owns memory.)
//!
//! # The two key stores
//!
//! Each pending key is stored once, in a fixed table of entries; the ring
//! holds the entry's index. How the key sits in its entry is the queue's
//! third type parameter:
//!
//! * **Compact** ([`CoalescingQueue<K, V, Compact>`](Compact), or
//!   [`CompactQueue<K, V>`]), for keys that are plain data
//!   ([`CompactKey`]: integers, `bool`, `char`, arrays and tuples of them,
//!   or a struct of those with one line of [`compact_key!`]). The key is
//!   packed into at most four atomic words. A duplicate offer of a queued
//!   key is answered with loads alone (it writes no shared memory); a new
//!   key, a take, an ack and a nack change the table with atomic
//!   read-modify-writes and stores, never a lock. Two offers of *new* keys
//!   with the same home bucket (a bucket is 8 entries) exclude each other
//!   with the bucket's insert bit while one inserts: a few dozen
//!   instructions, no user code, no allocation, no waiting inside; so an
//!   offer of a new key is not strictly lock-free (it may wait for a bit
//!   whose holder was preempted: a short spin, then yields, then sleeps of
//!   up to a millisecond, so it burns no core).
//! * **General** (`CoalescingQueue<K, V>`, the default, or
//!   `CoalescingQueue<K, V, S>` for a hasher `S`), for any
//!   `Hash + Eq + Clone` key: a lock per entry, held for one comparison
//!   (`K::eq`), one move or one clone. A duplicate is looked up without the
//!   insert bit, as on the compact store, so it never waits behind a new
//!   key's insert (only behind a comparison on the very entry it reads).
//!
//! Both stores place a key by its hash: a hasher that sends many keys to
//! the same value (a constant, or one that ignores most of the key) makes
//! them share a home bucket and spill past it, and a lookup then walks
//! every bucket they spilled through: filling such a table costs time
//! quadratic in the keys (16,384 keys with a constant hash: about 500 ms,
//! against under 1 ms with the default hasher). Use the default hasher, or
//! one that mixes every bit of the key.
//!
//! ```
//! use coalescing_queue::{compact_key, CoalescingQueue, Compact, Offered};
//!
//! #[derive(Clone, Copy, Debug, PartialEq)]
//! struct Done { id: u128, ts: u64, ok: bool, last: bool }
//! compact_key!(Done { id: u128, ts: u64, ok: bool, last: bool });
//!
//! let compact = CoalescingQueue::<Done, String, Compact>::new(1024);
//! let done = Done { id: 1, ts: 2, ok: true, last: false };
//! assert_eq!(compact.try_offer_key(done), Ok(Offered::Enqueued));
//! assert_eq!(compact.try_offer_key(done), Ok(Offered::Coalesced));
//!
//! let general = CoalescingQueue::<String, String>::new(1024);
//! assert_eq!(general.try_offer_key("table 7".to_string()), Ok(Offered::Enqueued));
//! ```
//!
//! What is lock-free, and what waits: in both stores the ring
//! (`crossbeam_queue::ArrayQueue`), the slot accounting and the close flag
//! are atomics, and a take finds its entry by index (no hash, no `Eq`).
//! Blocking, timeout and async forms wait on `event_listener` events (their
//! notify takes the event's lock only when someone waits). `stats()` reads
//! every entry once, to find the oldest lease.
//!
//! The protocol behind these (the order of every step, and why) is in
//! [`design`]; every race in it is model-checked with loom, and each rule
//! has a deliberately broken variant that the models must catch.
//!
//! # Keys and values
//!
//! A key is an identity: what coalesces is the key, all of it, as its `Eq`
//! and `Hash` (general store) or its packed words (compact store) see it.
//! Data that should ride with a key and stay current while it waits is a
//! *value*: give the queue [`Valued`] as its store and `(key, value)` pairs
//! as its keys. An offer whose key is pending merges its value into the
//! pending one ([`Merge`]: [`Latest`], the newer replaces it, unless set
//! with [`Builder::merge`]); a take delivers the key with the value pending
//! at the take. A leased copy does not change: under
//! [`InFlightPolicy::Requeue`] (the default) what is offered while it is out
//! is delivered after the ack, and a nack queues the leased value merged
//! with it.
//!
//! Do not put a value into a general-store key whose `Eq` and `Hash` look
//! at only part of it (a struct `(table, ts)` equal on `table` alone): an
//! offer of a newer `ts` then reports `Coalesced`, and the pending key, with
//! its *old* `ts`, is what is delivered: stale data, silently.
//!
//! ```
//! use coalescing_queue::{CoalescingQueue, Entry, Offered};
//! use std::hash::{Hash, Hasher};
//!
//! #[derive(Clone, Debug)]
//! struct Checkpoint { table: u32, ts: u64 }
//! impl PartialEq for Checkpoint {
//!     fn eq(&self, other: &Self) -> bool { self.table == other.table }
//! }
//! impl Eq for Checkpoint {}
//! impl Hash for Checkpoint {
//!     fn hash<H: Hasher>(&self, h: &mut H) { self.table.hash(h) }
//! }
//!
//! let wrong = CoalescingQueue::<Checkpoint, ()>::new(16);
//! wrong.try_offer_key(Checkpoint { table: 7, ts: 10 }).unwrap();
//! let newer = Checkpoint { table: 7, ts: 12 };
//! assert_eq!(wrong.try_offer_key(newer), Ok(Offered::Coalesced));
//! let Ok(Entry::Key(taken)) = wrong.try_take() else { unreachable!() };
//! assert_eq!(taken.ts, 10); // 12 is gone
//! ```
//!
//! The right form is `Valued` with `(table, ts)` and a max merge:
//!
//! ```
//! use coalescing_queue::{Builder, Compact, Entry, Valued};
//!
//! let q = Builder::<(u32, u64), (), Valued<Compact>>::new()
//!     .capacity(1024)
//!     .merge(|pending: &mut u64, newer: u64| *pending = (*pending).max(newer))
//!     .build();
//! for ts in [10, 12, 11] {
//!     q.try_offer_key((7, ts)).unwrap();
//! }
//! assert_eq!(q.try_take(), Ok(Entry::Key((7, 12))));
//!
//! // The leased copy stays as taken; newer offers wait behind it.
//! q.try_offer_key((7, 13)).unwrap();
//! let lease = q.try_take_leased().unwrap();
//! q.try_offer_key((7, 15)).unwrap();
//! q.try_offer_key((7, 14)).unwrap();
//! assert_eq!(*lease, Entry::Key((7, 13)));
//! lease.ack();
//! assert_eq!(q.try_take(), Ok(Entry::Key((7, 15))));
//! ```
//!
//! A merge sees only what is still pending. Once a value is delivered (a
//! plain take returned it, or its lease was acked) the queue forgets it,
//! and an older value offered after that, or while it was in flight, is
//! delivered on its own. A receiver that must never go back keeps the last
//! value it sent per key and drops older ones (`examples/checkpoints.rs`).
//!
//! Data kept beside the queue instead (say `ts[table].fetch_max(..)` into
//! an array of atomics, then an offer of `table`) is not published by the
//! offer: a coalesced offer may write no shared memory at all (on the
//! compact store, a duplicate of a queued key is answered with loads alone),
//! so nothing orders that write before the taker's read, which may see an
//! older value. What the queue answers for is the offer itself: by G1, an
//! offer that returned `Ok` is followed by a take of its key that returns
//! after the offer began, and with `Valued` that take delivers the offer's
//! value merged in. The value is part of the offer, and the question goes
//! away.
//!
//! # Leases: in-flight keys
//!
//! A sender that only knows after the send whether it went out takes with a
//! lease ([`try_take_leased`](CoalescingQueue::try_take_leased),
//! [`take_batch_leased`](CoalescingQueue::take_batch_leased), ...). While the
//! lease is out, its key stays pending, so re-sends are coalesced into it;
//! [`ack`](LeaseIn::ack) ends it, [`nack`](LeaseIn::nack) (or dropping it)
//! queues the entry again at the tail. A requeue never fails: the lease kept
//! its slot. Leases and leased batches are `#[must_use]`: one dropped at
//! once is a nack.
//!
//! # Which take to use
//!
//! * **Plain** ([`try_take`](CoalescingQueue::try_take),
//!   [`take`](CoalescingQueue::take), ...): the entry is gone from the queue
//!   when the call returns; a key offered again from then on is a new copy.
//!   For a receiver that cannot fail.
//! * **Leased** (`*_leased`): the key stays pending until
//!   [`ack`](LeaseIn::ack); a failed send is a [`nack`](LeaseIn::nack) and
//!   comes back. For a sender over a transport that can fail.
//! * **Batch** ([`take_batch`](CoalescingQueue::take_batch),
//!   [`take_batch_leased`](CoalescingQueue::take_batch_leased)): one wait
//!   for the first entry, then up to `max` within `linger`, with one update
//!   of the shared counts: the form for a sender that sends in batches.
//!   `*_timeout` bounds the wait for the first entry. A close ends the
//!   linger, also one under way: the batch returns what it took.
//! * **Async** (`*_async`): the same, as futures, on any executor (the
//!   batch linger runs on `futures-timer`). Every take future loses
//!   nothing when dropped: the single takes are cancel-safe (an entry is
//!   taken only in the poll that returns it), `take_batch_async` leaves
//!   what it took in your `Vec`, and a leased batch future dropped while it
//!   lingers nacks what it held (those entries go back to the tail, and
//!   count as nacked): in a `select!` loop, prefer `take_batch_async`, or
//!   a linger shorter than the other arms' period.
//! * **Owned** (`*_owned`, on `Arc<CoalescingQueue>`): the lease or batch
//!   holds an `Arc` of the queue, so it is `'static` and can move into a
//!   spawned task or another thread (the send task of an async sender);
//!   the futures are `'static` too. Every leased form has an owned one:
//!   try, blocking, timeout, deadline and async for single leases;
//!   blocking, timeout and async for batches.
//!
//! Forms of each operation, as in `crossbeam-channel`: `try_*` never
//! blocks, the plain form blocks, `*_timeout` and `*_deadline` block up to a
//! duration or an `Instant` (a deadline already past is a try), `*_async`
//! returns a future. Errors hand the rejected value back (`into_inner`) and
//! print as `Full(..)` without needing `T: Debug`.
//!
//! # A leased sender
//!
//! Workers offer with re-sends through [`Producer`]s; one async task takes
//! leased batches with a linger, sends each batch, acks it if the send went
//! out and nacks it if it failed (its entries go back to the tail and come
//! again); the last producer's drop closes the queue, and the loop ends at
//! the first empty batch: closed, nothing queued, nothing in flight.
//!
//! ```
//! use coalescing_queue::{CoalescingQueue, Entry};
//! use std::collections::BTreeSet;
//! use std::{sync::Arc, thread, time::Duration};
//!
//! #[derive(Clone, PartialEq, Eq, Hash, Debug)]
//! struct Done { table: u64 }
//!
//! /// The transport: every third send fails.
//! async fn send(messages: &[String], sends: &mut u32) -> Result<(), ()> {
//!     assert!(!messages.is_empty());
//!     *sends += 1;
//!     tokio::task::yield_now().await;
//!     if *sends % 3 == 0 { Err(()) } else { Ok(()) }
//! }
//!
//! let queue = Arc::new(CoalescingQueue::<Done, String>::new(1024));
//! let producer = queue.producer();
//! let workers: Vec<_> = (0..4)
//!     .map(|w| {
//!         let producer = producer.clone(); // made before any is dropped
//!         thread::spawn(move || {
//!             for _resend in 0..3 {
//!                 for table in 0..10 {
//!                     producer.offer_key(Done { table: w * 10 + table }).unwrap();
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! drop(producer); // the workers' producers are now the only ones
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let delivered = runtime.block_on(async {
//!     let (mut delivered, mut sends) = (BTreeSet::new(), 0);
//!     loop {
//!         let batch = queue.take_batch_leased_async(64, Duration::from_millis(2)).await;
//!         if batch.is_empty() {
//!             break; // closed and drained: nothing queued or in flight
//!         }
//!         let messages: Vec<String> = batch
//!             .iter()
//!             .map(|entry| match entry {
//!                 Entry::Key(done) => format!("table {} done", done.table),
//!                 Entry::Item(message) => message.clone(),
//!             })
//!             .collect();
//!         match send(&messages, &mut sends).await {
//!             Ok(()) => {
//!                 delivered.extend(messages);
//!                 batch.ack();
//!             }
//!             Err(()) => batch.nack(), // queued again at the tail
//!         }
//!     }
//!     delivered
//! });
//! for worker in workers {
//!     worker.join().unwrap();
//! }
//! assert_eq!(delivered.len(), 40); // every table's answer went out
//! assert_eq!((queue.len(), queue.in_flight()), (0, 0));
//! ```
//!
//! A sender whose sends run in other tasks (the owned forms above) ends the
//! same way: after close its take waits while those tasks hold leases, and
//! comes back empty only once the last one has ended. A task that holds a
//! lease itself ends it before it takes again (see [sharing and shutting
//! down](#sharing-and-shutting-down)).
//!
//! `examples/async_sender.rs` is a whole tokio sender: workers offer with
//! re-sends, one task takes owned leased batches with a linger, spawned
//! tasks send them over a failing transport and nack a failed batch with
//! the queue's backoff, and the program shuts down with `close_and_wait`.
//!
//! # Retries and backoff
//!
//! A send that failed is often better tried again later than at once. A
//! queue built with [`Builder::retries`] lets a lease be nacked with a
//! delay: [`nack_after(d)`](LeaseIn::nack_after), or
//! [`nack_backoff()`](LeaseIn::nack_backoff), which waits as the queue's
//! [`Backoff`] says for the lease's [`attempt`](LeaseIn::attempt) (by
//! default client-go's: 5 ms for the first failure, doubling up to 1,000 s;
//! jitter if asked). Meanwhile the key stays pending and keeps its slot: an
//! offer of it is coalesced (a value merges into the pending one), no take
//! returns it, and once it is due it is queued at the tail. The sender holds
//! no lease and sleeps nowhere; a blocking, timeout or async take wakes when
//! a delayed key falls due. Each lease knows its attempt: 1, then one more
//! per nack of the same pending copy, and 1 again after an ack. Batches
//! too: [`LeaseBatchIn::nack_after`] (one delay for all, falling due in
//! the batch's order), [`LeaseBatchIn::nack_backoff`] (each key by its own
//! attempt), or [`into_leases`](LeaseBatchIn::into_leases) for a delay per
//! key. A new key can be offered with a delay too
//! ([`try_offer_key_after`](CoalescingQueue::try_offer_key_after),
//! [`offer_key_after`](CoalescingQueue::offer_key_after), client-go's
//! `AddAfter`): it is pending and holds its slot from the offer on, and is
//! queued once due; an offer never changes a pending copy's delay.
//!
//! ```
//! use coalescing_queue::{Backoff, CoalescingQueue, Entry, Offered};
//! use std::time::Duration;
//!
//! let q = CoalescingQueue::<u32, String>::builder()
//!     .capacity(64)
//!     .retries(Backoff::exponential(Duration::from_millis(2), Duration::from_secs(1)))
//!     .build();
//! q.offer_key(7).unwrap();
//!
//! let lease = q.take_leased().unwrap();
//! assert_eq!(lease.attempt(), 1);
//! // The transport failed: try again in 2 ms (then 4, 8, ...).
//! assert_eq!(lease.nack_backoff(), Duration::from_millis(2));
//! assert_eq!(q.try_offer_key(7), Ok(Offered::Coalesced)); // still pending
//! assert!(q.try_take().is_err()); // not yet due
//!
//! let lease = q.take_leased().unwrap(); // wakes when key 7 is due
//! assert_eq!((lease.entry(), lease.attempt()), (&Entry::Key(7), 2));
//! lease.ack();
//! ```
//!
//! Delays end at close: delayed entries fall due at once, and a delayed
//! nack after close queues its entry at once, so a drain never waits out a
//! backoff. The delay schedule is allocated at build (for every slot) and
//! only with `retries`; a queue without it has no schedule, and a delayed
//! nack on it panics (the lease is nacked as the panic unwinds). Due
//! entries are queued by whoever looks: any take, `len`, `is_empty` or
//! `stats`, and a waiting taker, which sleeps no longer than the first due
//! time; the schedule takes a lock (never held for user code), while the
//! takes of a queue with nothing delayed pay one bit test. [`Stats`] counts
//! delayed entries and says when the next is due.
//!
//! # Sharing and shutting down
//!
//! The queue is `Send + Sync`; share it with an `Arc`. Every method takes
//! `&self`.
//!
//! [`close`](CoalescingQueue::close) makes every later offer fail with its
//! value handed back, wakes everyone blocked, and lets takers drain what is
//! queued. A take reports `Closed` only when that is final: the queue is
//! closed and **drained**, nothing queued, nothing on its way in and no
//! lease out. While leases are out after close, a nack (or the ack of a key
//! re-offered in flight) can still queue an entry again, so until the last
//! lease ends a try-take says `Empty` and a blocking or async take waits:
//! the entry that comes back wakes it, and so does the last ack (then it
//! reports `Closed`). So the natural loop, take until `Closed` or until a
//! batch comes back empty, leaves nothing behind, also when its sends run
//! in other tasks. [`close_and_wait`](CoalescingQueue::close_and_wait)
//! closes and waits for the same end (`false` on its timeout, or at once if
//! `close` is called meanwhile, to abandon a drain that takes too long).
//!
//! The one way to deadlock: after close, a thread (or task) that holds a
//! lease or a leased batch and makes a blocking or async take *itself*
//! waits for its own lease to end, which it never does. End the lease (ack,
//! nack or drop) first, hand it to another task, or use `try_*` or a
//! `*_timeout` form there.
//!
//! A channel closes when its last sender is dropped; a queue shared by
//! `Arc` cannot tell its producers from its consumers. Give each producer a
//! [`Producer`] ([`CoalescingQueue::producer`], `Clone`): when the last one
//! is dropped the queue closes, so a taker blocked in `take` drains what is
//! queued and ends instead of waiting for ever.
//!
//! # Memory
//!
//! Everything is allocated when the queue is built, for the whole
//! capacity: the ring holds an `Entry<u32, V>`'s worth inline in every slot (a
//! queued key is the 4-byte index of its table entry; a pass-through item
//! is the `V` itself), and the key table about 1.25 entries per slot (a
//! `u64` control word, two `u32`s for a spilled key's home and a lease's
//! start, plus the packed key or a `Mutex<Option<K>>`). So
//! memory is about `capacity × (size_of::<Entry<u32, V>>() + 8)` for the
//! ring plus the table, whatever is queued: a large `V` costs its size in
//! every slot of capacity. If items are large or rare, box them
//! (`CoalescingQueue<K, Box<Item>>`): a slot is then a pointer wide. A
//! queue built with [`Builder::retries`] has a delay schedule beside, of
//! `16 + size_of::<Entry<u32, V>>()` bytes a slot, rounded up to 8 (24 for
//! items of up to 4 bytes, 32 for a `Box`).
//!
//! # Panics in user code
//!
//! A panic in a key's `Hash`, `Eq` or `Clone`, in `CompactKey::pack` or
//! `unpack`, or in the `Drop` of a key or item propagates to the caller of
//! the queue method that ran it, and leaves the queue whole: no claim is
//! leaked, no key pinned and no queued entry lost. An offer that panics did
//! not happen. A take that panics (a leased take's `Clone`, an `unpack`)
//! put its entry back, at the tail. Takes, acks and nacks run no `Hash` and
//! no `Eq`: a key's entry is found by its index, and what its removal must
//! undo is recorded in the entry. A batch whose `Drop` panics ends every
//! lease it holds. Dropping the queue drops every entry still queued, each
//! in its turn even if one's `Drop` panics, and then propagates the first
//! panic (unless the queue is dropped while its thread already unwinds:
//! then that panic is dropped, not raised, which would abort). A `Drop` never runs while the queue holds a lock or a bit, so it
//! may call back into the queue. (A second panic while unwinding aborts, as
//! it does anywhere.)
//!
//! # Streams
//!
//! With the `stream` feature (on `futures-core`), an `Arc` of the queue
//! gives `futures_core::Stream`s: `take_stream()` of entries,
//! `lease_stream()` of owned leases and `leased_batch_stream(max, linger)`
//! of owned leased batches. Each polls the crate's own async take (boxed:
//! one small allocation per item), so it loses no entry when dropped, and
//! ends when the queue is closed and drained. A stream keeps that take
//! between polls: dropping a `next()` future leaves it registered, so a
//! stream kept but not polled holds its place among the waiters (a
//! wake-up it was given, which another taker then does not get) and any
//! batch it is gathering (in flight), until it is polled again or dropped.
//! Dropping it passes the wake-up on and nacks the batch: drop a stream
//! you stop polling. The queue itself is not
//! a `Stream`: a `poll_next` of its own would have to keep a registered
//! waiter between polls, a second, hand-written copy of the one wait loop
//! the loom models check (the `async fn` forms are that loop).
//!
//! Without the feature, `unfold` over an owned handle gives a stream of
//! entries (or of leases, with `take_leased_owned_async`) in three lines:
//!
//! ```
//! use coalescing_queue::{CoalescingQueue, Entry};
//! use futures_lite::{stream, StreamExt};
//! use std::sync::Arc;
//!
//! let q = Arc::new(CoalescingQueue::<u32, String>::new(8));
//! q.offer_key(1).unwrap();
//! q.offer_key(2).unwrap();
//! q.close();
//! let entries = stream::unfold(q.clone(), |q| async move {
//!     let entry = q.take_async().await.ok()?; // ends when closed and drained
//!     Some((entry, q))
//! });
//! let taken: Vec<_> = futures_lite::future::block_on(entries.collect());
//! assert_eq!(taken, [Entry::Key(1), Entry::Key(2)]);
//! ```
#![forbid(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

mod backoff;
mod entry;
mod error;
mod gate;
mod keys;
mod lease;
mod policy;
mod queue;
mod stats;
#[cfg(feature = "stream")]
mod stream;
mod sync;
mod wait;

pub use backoff::Backoff;
pub use entry::{Entry, Offered};
pub use error::{
    BuildError, OfferError, OfferTimeoutError, TakeError, TakeTimeoutError, TryOfferError,
    TryTakeError,
};
pub use gate::{ResendGate, ResendPermit};
pub use keys::compact_key::{CompactKey, Packer, Unpacker};
pub use keys::valued::{Latest, Merge, Valued};
pub use keys::{Compact, KeyStore};
pub use lease::batch::{LeaseBatch, LeaseBatchIn, OwnedLeaseBatch};
pub use lease::{Lease, LeaseIn, OwnedLease, QueueHandle};
pub use policy::InFlightPolicy;
pub use queue::builder::Builder;
pub use queue::producer::Producer;
#[allow(deprecated)]
pub use queue::DefaultHasher;
pub use queue::{CoalescingQueue, CompactQueue, DefaultHashBuilder};
pub use stats::Stats;
#[cfg(feature = "stream")]
pub use stream::{LeaseStream, LeasedBatchStream, TakeStream};

/// How the crate is built and why: the problem, the parts, the protocol
/// step by step with every memory ordering, the guarantees, how they are
/// verified, and what was measured. (The repository's `DESIGN.md`.)
#[doc = include_str!("../DESIGN.md")]
pub mod design {}

/// The README's example is compiled and run with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
