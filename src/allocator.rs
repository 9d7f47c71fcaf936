//! The process's memory allocator: mimalloc for everything up to 1 MiB,
//! the system allocator (glibc) above.
//!
//! mimalloc because a list page makes hundreds of small allocations and
//! glibc's malloc took 16 % of its CPU (`malloc_consolidate`, arena locks):
//! on 2 cores, 32 connections, list first page went 9.7k → 12.6k req/s on
//! SQLite and 6.5k → 8.4k on PostgreSQL. It is built without transparent
//! huge pages (`no_thp` in Cargo.toml): with them every thread's heap took a
//! 2 MiB page, and idle RSS went from 10 to 36 MiB.
//!
//! The system allocator for large blocks because mimalloc keeps freed
//! memory for reuse until later allocations prompt it to return it: the
//! 19 MiB that Argon2 hashes in (the bootstrap client's secret at a first
//! start, then token requests) stayed resident in an idle server, 32 MiB
//! instead of 12. glibc maps blocks this large on their own and unmaps them
//! when freed.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks of this size or more go to the system allocator.
const LARGE: usize = 1 << 20;

pub struct Allocator;

fn is_large(size: usize) -> bool {
    size >= LARGE
}

// SAFETY: every block is freed (or resized) by the allocator that made it:
// the choice depends only on the size, and `dealloc` and `realloc` receive
// the layout the block was allocated with (GlobalAlloc's contract). A resize
// that crosses the boundary allocates anew, copies and frees the old block.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            System.alloc(layout)
        } else {
            MiMalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            System.alloc_zeroed(layout)
        } else {
            MiMalloc.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout.size()) {
            System.dealloc(ptr, layout)
        } else {
            MiMalloc.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_large(layout.size()), is_large(new_size)) {
            (false, false) => MiMalloc.realloc(ptr, layout, new_size),
            (true, true) => System.realloc(ptr, layout, new_size),
            _ => {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let new_ptr = self.alloc(new_layout);
                if !new_ptr.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new_ptr
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_keep_their_contents_when_resized_across_the_boundary() {
        let mut bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        bytes.reserve_exact(super::LARGE); // small → large
        assert!(bytes.capacity() >= super::LARGE);
        assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        bytes.shrink_to_fit(); // large → small
        assert!(bytes.capacity() < super::LARGE);
        assert!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        let big = vec![7u8; 3 * super::LARGE]; // large, zeroed path not taken: filled
        assert!(big.iter().all(|b| *b == 7));
        let zeroed = vec![0u64; super::LARGE]; // alloc_zeroed, large
        assert!(zeroed.iter().all(|v| *v == 0));
    }
}
