//! What an offer reports and what a take returns.

/// What an accepted key offer did.
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Offered};
///
/// let q = CoalescingQueue::<u32, String>::new(4);
/// assert_eq!(q.try_offer_key(1), Ok(Offered::Enqueued));
/// assert_eq!(q.try_offer_key(1), Ok(Offered::Coalesced));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offered {
    /// The key was not pending: a new copy now waits at the tail.
    Enqueued,
    /// The key was already pending (queued, or in flight): the offer is
    /// absorbed by that copy, which is still going to be delivered.
    Coalesced,
}

/// One thing taken from the queue: a compact key or a pass-through item.
///
/// A key is turned into a full value only when it is taken, with
/// [`into_item`](Entry::into_item) (lazy materialization).
///
/// ```
/// use coalescing_queue::{CoalescingQueue, Entry};
///
/// let q = CoalescingQueue::<u32, String>::new(4);
/// q.try_offer_key(7).unwrap();
/// q.try_offer("ready".to_string()).unwrap();
///
/// let first = q.try_take().unwrap();
/// assert_eq!(first, Entry::Key(7));
/// assert_eq!(first.into_item(|id| format!("done {id}")), "done 7");
/// assert_eq!(q.try_take().unwrap().into_item(|id| id.to_string()), "ready");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry<K, V> {
    /// A coalesced key, offered with `offer_key` and its forms.
    Key(K),
    /// A pass-through item, offered with `offer` and its forms.
    Item(V),
}

impl<K, V> Entry<K, V> {
    /// Builds the full value: a key through `materialize`, an item as it is.
    pub fn into_item(self, materialize: impl FnOnce(K) -> V) -> V {
        match self {
            Self::Key(key) => materialize(key),
            Self::Item(item) => item,
        }
    }

    /// The key, if this is one.
    ///
    /// ```
    /// use coalescing_queue::Entry;
    ///
    /// let key: Entry<u32, &str> = Entry::Key(1);
    /// let item: Entry<u32, &str> = Entry::Item("x");
    /// assert_eq!((key.key(), item.key()), (Some(&1), None));
    /// assert_eq!((key.item(), item.item()), (None, Some(&"x")));
    /// assert!(key.is_key() && item.is_item());
    /// ```
    pub fn key(&self) -> Option<&K> {
        match self {
            Self::Key(key) => Some(key),
            Self::Item(_) => None,
        }
    }

    /// The item, if this is one.
    pub fn item(&self) -> Option<&V> {
        match self {
            Self::Key(_) => None,
            Self::Item(item) => Some(item),
        }
    }

    /// `true` for a key.
    pub fn is_key(&self) -> bool {
        matches!(self, Self::Key(_))
    }

    /// `true` for a pass-through item.
    pub fn is_item(&self) -> bool {
        matches!(self, Self::Item(_))
    }
}
