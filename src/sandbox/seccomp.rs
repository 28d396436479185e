//! The seccomp filter of every bubblewrap run (DESIGN §6, issue 8): the kernel keyring system
//! calls `keyctl`, `add_key` and `request_key` fail with `EPERM`, everything else is allowed.
//!
//! The child also starts in a fresh, empty session keyring (`hardening::isolate_child`), and in
//! its own user namespace the user and persistent keyrings are not the caller's (Linux ≥ 5.3
//! keeps them per user namespace); the filter is what makes that hold whatever the kernel
//! version: without these calls no key can be listed, searched, read by its serial number or
//! linked, not even one whose permissions would let the user read it.
//!
//! The program is compiled once by `seccompiler` (rust-vmm's pure-Rust BPF compiler) and handed
//! to bubblewrap through a pipe (`--seccomp FD`), which loads it right before it executes the
//! script. Its architecture check kills a process that makes a system call of another ABI
//! (`int 0x80` from x86-64), so the 32-bit numbers of these calls cannot slip through; the x32
//! numbers of x86-64 are listed explicitly.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use super::SandboxError;

/// The system calls the filter denies, by name (for messages and tests) and number.
pub(crate) const DENIED: &[(&str, libc::c_long)] = &[
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("keyctl", libc::SYS_keyctl),
];

/// x86-64's x32 ABI shares the architecture token but marks its calls with this bit.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;

/// The compiled filter as bubblewrap reads it: `struct sock_filter`s in native byte order.
pub(crate) fn program() -> Result<&'static [u8], SandboxError> {
    static PROGRAM: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| compile(std::env::consts::ARCH))
        .as_deref()
        .map_err(|reason| SandboxError::Seccomp {
            reason: reason.clone(),
        })
}

fn compile(arch: &str) -> Result<Vec<u8>, String> {
    let target = TargetArch::try_from(arch).map_err(|_| {
        format!("vars has no keyring filter for the {arch} architecture (x86_64, aarch64 and riscv64 are supported)")
    })?;
    let mut rules = BTreeMap::new();
    // `c_long` is `i64` on the supported (64-bit) targets, `i32` elsewhere.
    #[allow(clippy::useless_conversion)]
    for &(_, number) in DENIED {
        rules.insert(i64::from(number), Vec::new());
        #[cfg(target_arch = "x86_64")]
        rules.insert(i64::from(number | X32_SYSCALL_BIT), Vec::new());
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        target,
    )
    .map_err(|e| e.to_string())?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for insn in &program {
        bytes.extend_from_slice(&insn.code.to_ne_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_ne_bytes());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the classic-BPF program on a `seccomp_data` with `arch` and `nr`, the way the
    /// kernel does (only the instructions seccompiler emits here are interpreted).
    fn verdict(program: &[u8], arch: u32, nr: u32) -> u32 {
        let insns: Vec<(u16, u8, u8, u32)> = program
            .chunks_exact(8)
            .map(|c| {
                (
                    u16::from_ne_bytes([c[0], c[1]]),
                    c[2],
                    c[3],
                    u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let (code, jt, jf, k) = insns[pc];
            match code {
                0x20 => acc = if k == 4 { arch } else { nr }, // ld [k]: nr at 0, arch at 4
                0x15 => {
                    // jeq #k
                    pc += usize::from(if acc == k { jt } else { jf });
                }
                0x05 => pc += k as usize, // ja
                0x06 => return k,         // ret #k
                other => panic!("unexpected BPF opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn denies_the_keyring_calls_and_allows_the_rest() {
        let program = program().unwrap();
        assert_eq!(program.len() % 8, 0);
        let arch = match std::env::consts::ARCH {
            "x86_64" => 0xc000_003e,
            "aarch64" => 0xc000_00b7,
            "riscv64" => 0xc000_00f3,
            other => panic!("untested architecture {other}"),
        };
        let eperm = 0x0005_0000 | libc::EPERM as u32;
        for &(name, nr) in DENIED {
            assert_eq!(verdict(program, arch, nr as u32), eperm, "{name}");
            #[cfg(target_arch = "x86_64")]
            assert_eq!(
                verdict(program, arch, (nr | X32_SYSCALL_BIT) as u32),
                eperm,
                "x32 {name}"
            );
        }
        for nr in [libc::SYS_read, libc::SYS_openat, libc::SYS_execve] {
            assert_eq!(verdict(program, arch, nr as u32), 0x7fff_0000, "{nr}");
        }
        // Another ABI (i386's keyctl is 288) kills the process.
        assert_eq!(verdict(program, 0x4000_0003, 288), 0x8000_0000);
    }

    #[test]
    fn unknown_architectures_are_refused() {
        let err = compile("sparc64").unwrap_err();
        assert!(err.contains("sparc64"), "{err}");
    }
}
