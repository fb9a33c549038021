//! `both_stores!(test_a, test_b, ..)`: each named generic test function
//! `fn test_a<S>()`, run once on the compact identity store (`Compact`)
//! and once on the general one (`DefaultHashBuilder`), as
//! `compact::test_a` and `general::test_a`. Used by the tests of keys with
//! values, whose store is `Valued<S>`.

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod compact {
            $( #[test] fn $name() { super::$name::<coalescing_queue::Compact>(); } )*
        }
        mod general {
            $( #[test] fn $name() { super::$name::<coalescing_queue::DefaultHashBuilder>(); } )*
        }
    };
}
