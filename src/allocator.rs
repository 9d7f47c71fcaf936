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
//! when freed, but only once its mmap threshold is pinned: by default glibc
//! raises the threshold to the size of each mapped block freed, so from the
//! second Argon2 computation on, 19 MiB blocks came from its heaps and
//! stayed there (a burst of token requests left 7.9 GB resident). The first
//! large allocation pins the threshold at `LARGE`, which turns that dynamic
//! adjustment off.
//!
//! SQLite's own allocations (the page cache, bound parameters, statement
//! journals) go to mimalloc too, through `sqlite3_config`: an import's
//! writer thread spent 12 % of its time in glibc's malloc and free
//! (`unlink_chunk`, `_int_malloc`).

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks of this size or more go to the system allocator.
const LARGE: usize = 1 << 20;

pub struct Allocator;

fn is_large(size: usize) -> bool {
    size >= LARGE
}

/// Pins glibc's mmap threshold (once; later calls are an atomic load).
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static PINNED: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only sets a malloc parameter; it does not allocate
        // through this allocator, so calling it from `alloc` cannot recurse.
        PINNED.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE as libc::c_int);
        });
    }
}

// SAFETY: every block is freed (or resized) by the allocator that made it:
// the choice depends only on the size, and `dealloc` and `realloc` receive
// the layout the block was allocated with (GlobalAlloc's contract). A resize
// that crosses the boundary allocates anew, copies and frees the old block.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            pin_mmap_threshold();
            System.alloc(layout)
        } else {
            MiMalloc.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            pin_mmap_threshold();
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
            (true, true) => {
                pin_mmap_threshold();
                System.realloc(ptr, layout, new_size)
            }
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

/// SQLite's memory routines, backed by mimalloc (SQLite's `xSize` needs the
/// usable size of a block, which mimalloc answers for any of its blocks).
mod sqlite {
    use std::os::raw::{c_int, c_void};

    use libmimalloc_sys as mi;
    use libsqlite3_sys as ffi;

    /// Blocks SQLite asked for, counted in tests only (to see it asks us).
    #[cfg(test)]
    pub static MALLOCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    unsafe extern "C" fn malloc(size: c_int) -> *mut c_void {
        #[cfg(test)]
        MALLOCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        mi::mi_malloc(usize::try_from(size).unwrap_or(0))
    }

    unsafe extern "C" fn free(block: *mut c_void) {
        mi::mi_free(block)
    }

    unsafe extern "C" fn realloc(block: *mut c_void, size: c_int) -> *mut c_void {
        mi::mi_realloc(block, usize::try_from(size).unwrap_or(0))
    }

    unsafe extern "C" fn size(block: *mut c_void) -> c_int {
        c_int::try_from(mi::mi_usable_size(block)).unwrap_or(c_int::MAX)
    }

    unsafe extern "C" fn roundup(size: c_int) -> c_int {
        // SQLite asks before it allocates; a multiple of 8 is what it needs.
        size.saturating_add(7) & !7
    }

    unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }

    unsafe extern "C" fn shutdown(_: *mut c_void) {}

    /// Installs the routines; SQLite takes them only before its first
    /// connection opens (later it answers `SQLITE_MISUSE` and keeps its own).
    pub fn configure() -> bool {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: SQLITE_CONFIG_MALLOC copies the struct it is given; the
        // routines meet its contract (8-byte aligned blocks, `size` of any
        // live block, `free` and `realloc` of blocks `malloc` made or null).
        unsafe {
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const ffi::sqlite3_mem_methods)
                == ffi::SQLITE_OK
        }
    }
}

/// Routes SQLite's allocations to mimalloc, once per process, before the
/// first SQLite connection opens. Returns whether SQLite took them.
pub fn route_sqlite_allocations() -> bool {
    static ROUTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROUTED.get_or_init(sqlite::configure)
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

    #[tokio::test]
    async fn sqlite_allocates_through_mimalloc() {
        use crate::store::{self, PoolOptions};
        // Opening a store sets SQLite up before its first connection.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = store::open(&url, &PoolOptions::default()).await.unwrap();
        assert!(super::route_sqlite_allocations(), "SQLite refused the allocator");
        let before = super::sqlite::MALLOCS.load(std::sync::atomic::Ordering::Relaxed);
        // SAFETY: a block SQLite allocated and freed by SQLite.
        unsafe {
            let block = libsqlite3_sys::sqlite3_malloc(100);
            assert!(!block.is_null());
            libsqlite3_sys::sqlite3_free(block);
        }
        let after = super::sqlite::MALLOCS.load(std::sync::atomic::Ordering::Relaxed);
        assert!(after > before, "SQLite did not allocate through mimalloc");
        store.close().await;
    }
}
