//! `CompactKey`: keys that are plain data, packed into at most four 64-bit
//! words so that the compact key store can keep them in atomics and answer
//! a duplicate offer with loads alone (`table.rs`, `cells.rs`).
//!
//! A key is written field by field into a [`Packer`] and read back in the
//! same order from an [`Unpacker`]; each field takes exactly its
//! [`BITS`](CompactKey::BITS). Packing must be injective: two keys pack to
//! the same words exactly when they are equal. The impls here are, and a
//! struct packed field by field from such impls is too; the store compares
//! words, never `Eq`.

/// The most words a compact key may take (256 bits).
pub(crate) const MAX_WORDS: usize = 4;

/// A key that is plain data: packed into at most four `u64` words, for the
/// compact key store ([`Compact`](crate::Compact)).
///
/// Implemented for the integers, `bool`, `char`, arrays and tuples of
/// them. For a struct of such fields, [`compact_key!`](crate::compact_key!)
/// writes the impl in one line:
///
/// ```
/// use coalescing_queue::{compact_key, CoalescingQueue, Compact, Entry, Offered};
///
/// /// A "done" answer: 194 bits of data, packed into 4 words.
/// #[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// struct Done { id: u128, ts: u64, ok: bool, last: bool }
/// compact_key!(Done { id: u128, ts: u64, ok: bool, last: bool });
///
/// let q = CoalescingQueue::<Done, String, Compact>::new(1024);
/// let done = Done { id: 7, ts: 1, ok: true, last: false };
/// assert_eq!(q.try_offer_key(done), Ok(Offered::Enqueued));
/// assert_eq!(q.try_offer_key(done), Ok(Offered::Coalesced)); // loads only
/// assert_eq!(q.try_take(), Ok(Entry::Key(done)));
/// ```
///
/// A hand-written impl packs every field and unpacks them in the same order:
///
/// ```
/// use coalescing_queue::{CompactKey, Packer, Unpacker};
///
/// #[derive(Clone, Copy, PartialEq, Eq, Debug)]
/// struct Table { shard: u16, id: u64 }
///
/// impl CompactKey for Table {
///     const BITS: u32 = u16::BITS + u64::BITS;
///     fn pack(&self, out: &mut Packer) {
///         self.shard.pack(out);
///         self.id.pack(out);
///     }
///     fn unpack(input: &mut Unpacker<'_>) -> Self {
///         Table { shard: u16::unpack(input), id: u64::unpack(input) }
///     }
/// }
///
/// let q = coalescing_queue::CompactQueue::<Table, ()>::new(4);
/// q.offer_key(Table { shard: 3, id: 9 }).unwrap();
/// assert_eq!(q.try_take().unwrap().key(), Some(&Table { shard: 3, id: 9 }));
/// ```
pub trait CompactKey: Copy {
    /// The bits the packed form takes; at most 256 (four words).
    ///
    /// It must count every bit [`pack`](Self::pack) writes: the store keeps
    /// only the words `BITS` asks for, so bits beyond it would be lost and
    /// different keys could coalesce. An offer (or `is_pending`) of a key
    /// whose `pack` wrote more panics, in every build, before the queue
    /// changes:
    ///
    /// ```should_panic
    /// use coalescing_queue::{CompactKey, CompactQueue, Packer, Unpacker};
    ///
    /// #[derive(Clone, Copy)]
    /// struct Wide { id: u64, shard: u16 }
    ///
    /// impl CompactKey for Wide {
    ///     const BITS: u32 = 64; // wrong: pack writes 80
    ///     fn pack(&self, out: &mut Packer) {
    ///         self.id.pack(out);
    ///         self.shard.pack(out);
    ///     }
    ///     fn unpack(input: &mut Unpacker<'_>) -> Self {
    ///         Wide { id: u64::unpack(input), shard: u16::unpack(input) }
    ///     }
    /// }
    ///
    /// let q = CompactQueue::<Wide, ()>::new(4);
    /// let _ = q.try_offer_key(Wide { id: 1, shard: 2 }); // panics: 80 bits, BITS = 64
    /// ```
    const BITS: u32;

    /// Writes the key's fields into `out`, [`BITS`](Self::BITS) bits in all.
    /// Equal keys must write equal bits and different keys different bits.
    fn pack(&self, out: &mut Packer);

    /// Reads back what [`pack`](Self::pack) wrote, in the same order.
    fn unpack(input: &mut Unpacker<'_>) -> Self;
}

/// Words a key of `bits` bits takes (at least one).
pub(crate) const fn words_for(bits: u32) -> usize {
    let words = bits.div_ceil(64) as usize;
    assert!(words <= MAX_WORDS, "a CompactKey takes at most 256 bits");
    if words == 0 {
        1
    } else {
        words
    }
}

/// Where [`CompactKey::pack`] writes: fields laid end to end in four words.
#[derive(Debug, Default)]
pub struct Packer {
    words: [u64; MAX_WORDS],
    /// Bits written so far.
    at: u32,
}

impl Packer {
    /// Appends the low `bits` bits of `value` (`bits` at most 64).
    ///
    /// # Panics
    ///
    /// If more than 256 bits are written in all: a [`CompactKey`] impl whose
    /// `BITS` is wrong.
    #[inline(always)]
    pub fn put(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= 64);
        if bits == 0 {
            return;
        }
        let value = if bits == 64 {
            value
        } else {
            value & ((1 << bits) - 1)
        };
        let (word, offset) = ((self.at / 64) as usize, self.at % 64);
        assert!(
            self.at + bits <= 64 * MAX_WORDS as u32,
            "a CompactKey wrote more than 256 bits"
        );
        self.words[word] |= value << offset;
        if offset + bits > 64 {
            self.words[word + 1] |= value >> (64 - offset);
        }
        self.at += bits;
    }

    /// The packed words.
    pub(crate) fn words(&self) -> &[u64; MAX_WORDS] {
        &self.words
    }
}

/// Where [`CompactKey::unpack`] reads from: the words [`Packer`] filled.
#[derive(Debug)]
pub struct Unpacker<'a> {
    words: &'a [u64; MAX_WORDS],
    at: u32,
}

impl<'a> Unpacker<'a> {
    pub(crate) fn new(words: &'a [u64; MAX_WORDS]) -> Self {
        Self { words, at: 0 }
    }

    /// Takes the next `bits` bits (`bits` at most 64), as `put` wrote them.
    ///
    /// # Panics
    ///
    /// If more than 256 bits are read in all.
    #[inline(always)]
    pub fn take(&mut self, bits: u32) -> u64 {
        debug_assert!(bits <= 64);
        if bits == 0 {
            return 0;
        }
        let (word, offset) = ((self.at / 64) as usize, self.at % 64);
        assert!(
            self.at + bits <= 64 * MAX_WORDS as u32,
            "a CompactKey read more than 256 bits"
        );
        let mut value = self.words[word] >> offset;
        if offset + bits > 64 {
            value |= self.words[word + 1] << (64 - offset);
        }
        self.at += bits;
        if bits == 64 {
            value
        } else {
            value & ((1 << bits) - 1)
        }
    }
}

/// Packs a key into its words (the rest zero).
///
/// # Panics
///
/// If `K::pack` wrote more than `K::BITS` bits: the store keeps only
/// `words_for(K::BITS)` words, so the rest would be dropped and two
/// different keys could coalesce. Checked in every build (one compare of a
/// count that is a constant for the impls of this crate and
/// `compact_key!`); a panic here happens before the offer changes anything.
#[inline(always)]
pub(crate) fn pack<K: CompactKey>(key: &K) -> [u64; MAX_WORDS] {
    let mut packer = Packer::default();
    key.pack(&mut packer);
    if packer.at > K::BITS {
        understated_bits(core::any::type_name::<K>(), packer.at, K::BITS);
    }
    *packer.words()
}

#[cold]
#[inline(never)]
fn understated_bits(key: &str, wrote: u32, declared: u32) -> ! {
    panic!(
        "CompactKey for {key} wrote {wrote} bits but declares BITS = {declared}: \
         its BITS must count every bit its pack writes"
    )
}

/// The key whose packed words are `words`.
#[inline(always)]
pub(crate) fn unpack<K: CompactKey>(words: &[u64; MAX_WORDS]) -> K {
    K::unpack(&mut Unpacker::new(words))
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl CompactKey for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn pack(&self, out: &mut Packer) {
                out.put(*self as u64, Self::BITS);
            }
            #[inline(always)]
            fn unpack(input: &mut Unpacker<'_>) -> Self {
                input.take(Self::BITS) as $t
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, usize);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl CompactKey for $t {
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn pack(&self, out: &mut Packer) {
                (*self as $u).pack(out);
            }
            #[inline(always)]
            fn unpack(input: &mut Unpacker<'_>) -> Self {
                <$u>::unpack(input) as $t
            }
        }
    )*};
}
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, isize => usize, i128 => u128);

impl CompactKey for u128 {
    const BITS: u32 = 128;
    #[inline(always)]
    fn pack(&self, out: &mut Packer) {
        out.put(*self as u64, 64);
        out.put((*self >> 64) as u64, 64);
    }
    #[inline(always)]
    fn unpack(input: &mut Unpacker<'_>) -> Self {
        let low = input.take(64) as u128;
        low | (input.take(64) as u128) << 64
    }
}

impl CompactKey for bool {
    const BITS: u32 = 1;
    #[inline(always)]
    fn pack(&self, out: &mut Packer) {
        out.put(*self as u64, 1);
    }
    #[inline(always)]
    fn unpack(input: &mut Unpacker<'_>) -> Self {
        input.take(1) != 0
    }
}

impl CompactKey for char {
    const BITS: u32 = 21;
    #[inline(always)]
    fn pack(&self, out: &mut Packer) {
        out.put(*self as u64, Self::BITS);
    }
    #[inline(always)]
    fn unpack(input: &mut Unpacker<'_>) -> Self {
        // Only bits a `char` packed are ever read back.
        char::from_u32(input.take(Self::BITS) as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
    }
}

impl CompactKey for () {
    const BITS: u32 = 0;
    fn pack(&self, _: &mut Packer) {}
    fn unpack(_: &mut Unpacker<'_>) -> Self {}
}

impl<T: CompactKey, const N: usize> CompactKey for [T; N] {
    const BITS: u32 = T::BITS * N as u32;
    #[inline(always)]
    fn pack(&self, out: &mut Packer) {
        for item in self {
            item.pack(out);
        }
    }
    #[inline(always)]
    fn unpack(input: &mut Unpacker<'_>) -> Self {
        core::array::from_fn(|_| T::unpack(input))
    }
}

macro_rules! tuple {
    ($($name:ident),+) => {
        impl<$($name: CompactKey),+> CompactKey for ($($name,)+) {
            const BITS: u32 = 0 $(+ $name::BITS)+;
            #[inline(always)]
            #[allow(non_snake_case)]
            fn pack(&self, out: &mut Packer) {
                let ($($name,)+) = self;
                $($name.pack(out);)+
            }
            #[inline(always)]
            fn unpack(input: &mut Unpacker<'_>) -> Self {
                ($($name::unpack(input),)+)
            }
        }
    };
}
tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);

/// Implements [`CompactKey`] for a struct with named fields, each a
/// `CompactKey` (integers, `bool`, `char`, arrays and tuples of them), in
/// one line: `compact_key!(Done { id: u128, ts: u64, ok: bool });`. The
/// struct must also be `Copy`; it needs neither `Hash` nor `Eq` for the
/// compact store.
///
/// ```
/// use coalescing_queue::{compact_key, CompactQueue};
///
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// struct Done { table: u64, job: u32 }
/// compact_key!(Done { table: u64, job: u32 });
///
/// let q = CompactQueue::<Done, String>::new(16);
/// q.offer_key(Done { table: 1, job: 2 }).unwrap();
/// assert!(q.is_pending(&Done { table: 1, job: 2 }));
/// ```
///
/// A struct whose fields take more than 256 bits is refused by `cargo
/// check` already, with the error at the `compact_key!` line:
///
/// ```compile_fail
/// use coalescing_queue::compact_key;
///
/// #[derive(Clone, Copy)]
/// struct Wide { a: u128, b: u128, c: u8 }
/// compact_key!(Wide { a: u128, b: u128, c: u8 }); // error: 264 bits
/// ```
#[macro_export]
macro_rules! compact_key {
    ($name:ident { $($field:ident : $ty:ty),+ $(,)? }) => {
        // Here, not in the store: the error then points at this line of
        // the user's code, and `cargo check` reports it.
        const _: () = ::core::assert!(
            0 $(+ <$ty as $crate::CompactKey>::BITS)+ <= 256,
            ::core::concat!(
                "compact_key!(", ::core::stringify!($name),
                "): its fields take more than 256 bits, the most a compact key may take"
            )
        );
        impl $crate::CompactKey for $name {
            const BITS: u32 = 0 $(+ <$ty as $crate::CompactKey>::BITS)+;
            #[inline(always)]
            fn pack(&self, out: &mut $crate::Packer) {
                $(<$ty as $crate::CompactKey>::pack(&self.$field, out);)+
            }
            #[inline(always)]
            fn unpack(input: &mut $crate::Unpacker<'_>) -> Self {
                $name { $($field: <$ty as $crate::CompactKey>::unpack(input)),+ }
            }
        }
    };
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;

    fn round_trip<K: CompactKey + PartialEq + core::fmt::Debug>(key: K) {
        assert_eq!(unpack::<K>(&pack(&key)), key);
    }

    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Done {
        id: u128,
        ts: u64,
        ok: bool,
        last: bool,
    }
    compact_key!(Done {
        id: u128,
        ts: u64,
        ok: bool,
        last: bool
    });

    #[test]
    fn keys_round_trip() {
        round_trip(0u8);
        round_trip(u64::MAX);
        round_trip(-1i32);
        round_trip(i128::MIN);
        round_trip(u128::MAX - 5);
        round_trip('é');
        round_trip([u8::MAX, 0, 7]);
        round_trip((1u64, true, -3i16));
        round_trip([[1u32, 2], [3, 4]]);
        let done = Done {
            id: u128::MAX,
            ts: 0x1234_5678_9abc_def0,
            ok: true,
            last: true,
        };
        assert_eq!(Done::BITS, 194);
        assert_eq!(words_for(Done::BITS), 4);
        round_trip(done);
    }

    #[test]
    fn different_keys_pack_differently() {
        let base = Done {
            id: 1 << 100,
            ts: 5,
            ok: false,
            last: true,
        };
        let variants = [
            Done { id: 1, ..base },
            Done { ts: 6, ..base },
            Done { ok: true, ..base },
            Done {
                last: false,
                ..base
            },
        ];
        for other in variants {
            assert_ne!(pack(&base), pack(&other), "{other:?}");
        }
    }

    #[test]
    #[should_panic(expected = "more than 256 bits")]
    fn too_many_bits_panic() {
        let mut packer = Packer::default();
        for _ in 0..5 {
            packer.put(1, 64);
        }
    }
}
