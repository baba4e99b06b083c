//! Debian packages the system tests boot: the `linux-image-amd64` kernel and `busybox-static`,
//! fetched with `apt-get download`, unpacked with `dpkg-deb -x` and cached in
//! `<target>/linux-cache/` (or `$ACRN_LINUX_CACHE`), so only the first run needs the network.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{require_tools, target_dir};

fn sh(cmd: &mut Command, what: &str) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn cache_dir() -> PathBuf {
    std::env::var_os("ACRN_LINUX_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("linux-cache"))
}

/// Downloads `package` into `dir` and returns the .deb.
fn apt_download(package: &str, dir: &Path) -> PathBuf {
    sh(
        Command::new("apt-get")
            .args(["download", package])
            .current_dir(dir),
        &format!("apt-get download {package} (needs Debian's apt sources and the network)"),
    );
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
        })
        .unwrap_or_else(|| {
            panic!(
                "apt-get download {package} left no .deb in {}",
                dir.display()
            )
        })
}

/// Unpacks `deb` under a scratch directory and moves the file at `inner` (relative to the
/// package root, found by `pick` among the entries of its directory) to `cached`.
fn unpack_one(deb: &Path, work: &Path, dir_in_pkg: &str, pick: &str, cached: &Path) {
    let root = work.join("root");
    sh(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root),
        "dpkg-deb -x",
    );
    let file = std::fs::read_dir(root.join(dir_in_pkg))
        .unwrap_or_else(|e| panic!("the package has no /{dir_in_pkg}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(pick))
        .unwrap_or_else(|| panic!("the package has no /{dir_in_pkg}/{pick}*"));
    let tmp = cached.with_extension("tmp");
    std::fs::copy(&file, &tmp).unwrap();
    std::fs::rename(&tmp, cached).unwrap();
}

/// The modules of Debian's kernel a User VM loads (in this order), with their folder under
/// `kernel/`: the virtio ones for a virtio-blk disk through the legacy PCI transport, then
/// virtio_console, then e1000e for a passed-through 82574 NIC (the PTP and PPS cores it uses
/// are built in). Debian builds them as modules.
pub const UVM_MODULES: [(&str, &str); 8] = [
    ("virtio_ring", "drivers/virtio"),
    ("virtio", "drivers/virtio"),
    ("virtio_pci_legacy_dev", "drivers/virtio"),
    ("virtio_pci_modern_dev", "drivers/virtio"),
    ("virtio_pci", "drivers/virtio"),
    ("virtio_blk", "drivers/block"),
    ("virtio_console", "drivers/char"),
    ("e1000e", "drivers/net/ethernet/intel/e1000e"),
];

/// The Debian kernel (`vmlinuz`), from the cache or fetched into it.
pub fn debian_kernel() -> PathBuf {
    let vmlinuz = cache_dir().join("vmlinuz");
    if !vmlinuz.is_file() {
        fetch_kernel_package();
    }
    vmlinuz
}

/// The files of [`UVM_MODULES`] for the kernel [`debian_kernel`] returns, from the cache or
/// fetched into it.
pub fn debian_uvm_modules() -> Vec<PathBuf> {
    let dir = cache_dir().join("modules");
    let files: Vec<PathBuf> = UVM_MODULES
        .iter()
        .map(|(m, _)| dir.join(format!("{m}.ko")))
        .collect();
    if !files.iter().all(|f| f.is_file()) || !cache_dir().join("vmlinuz").is_file() {
        fetch_kernel_package();
    }
    files
}

/// Downloads linux-image-amd64's kernel package and caches its vmlinuz and the User VM's
/// modules.
fn fetch_kernel_package() {
    let cache = cache_dir();
    require_tools(&["apt-get", "dpkg-deb"]);
    let work = cache.join("download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let meta = apt_download("linux-image-amd64", &work);
    // Depends: linux-image-6.1.0-NN-amd64 (= ...): the package with the kernel.
    let depends = sh(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&meta)
            .arg("Depends"),
        "dpkg-deb -f Depends",
    );
    let real = depends
        .split(',')
        .map(|d| d.trim().split([' ', '(']).next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-") && d != &"linux-image-amd64")
        .unwrap_or_else(|| panic!("linux-image-amd64 depends on no linux-image-*: {depends}"))
        .to_string();
    let deb = apt_download(&real, &work);
    let root = work.join("root");
    sh(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        "dpkg-deb -x",
    );
    let modules = cache.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    let release = real.trim_start_matches("linux-image-");
    let kernel_dir = root.join("lib/modules").join(release).join("kernel");
    for (m, sub) in UVM_MODULES {
        let from = kernel_dir.join(sub).join(format!("{m}.ko"));
        let to = modules.join(format!("{m}.ko"));
        std::fs::copy(&from, to.with_extension("tmp"))
            .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        std::fs::rename(to.with_extension("tmp"), &to).unwrap();
    }
    let vmlinuz = cache.join("vmlinuz");
    let boot = root.join("boot");
    let image = std::fs::read_dir(&boot)
        .unwrap_or_else(|e| panic!("the package has no /boot: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .unwrap_or_else(|| panic!("the package has no /boot/vmlinuz-*"));
    std::fs::copy(&image, vmlinuz.with_extension("tmp")).unwrap();
    std::fs::rename(vmlinuz.with_extension("tmp"), &vmlinuz).unwrap();
    std::fs::write(cache.join("version"), format!("{real}\n")).unwrap();
    let _ = std::fs::remove_dir_all(&work);
}

/// Debian's statically linked busybox (`busybox-static`), from the cache or fetched into it.
pub fn busybox_static() -> PathBuf {
    let cache = cache_dir();
    let busybox = cache.join("busybox");
    if busybox.is_file() {
        return busybox;
    }
    require_tools(&["apt-get", "dpkg-deb"]);
    let work = cache.join("download-busybox");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let deb = apt_download("busybox-static", &work);
    unpack_one(&deb, &work, "bin", "busybox", &busybox);
    let _ = std::fs::remove_dir_all(&work);
    busybox
}

/// Which Service VM kernel scripts/build-service-vm-kernel.sh builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceVmKernel {
    /// x86_64_defconfig with the ACRN options.
    Full,
    /// The same without networking, sound, graphics, USB and disk controllers (`--small`).
    Small,
}

/// The Linux Service VM kernel (Debian's linux-source-6.1 with ACRN_GUEST and ACRN_HSM), built
/// by scripts/build-service-vm-kernel.sh into its cache outside the repository
/// (`${ACRN_CACHE:-$HOME/.cache/acrn-rs}/service-vm-kernel/`); minutes when the cache is empty
/// (the full one about 11 on 2 idle cores), reused afterwards.
pub fn service_vm_kernel(flavour: ServiceVmKernel) -> PathBuf {
    require_tools(&["apt-get", "dpkg-deb", "make", "gcc", "flex", "bison", "bc"]);
    let script = crate::repo_root().join("scripts/build-service-vm-kernel.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if flavour == ServiceVmKernel::Small {
        cmd.arg("--small");
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({})",
        script.display(),
        out.status
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let kernel = PathBuf::from(path);
    assert!(
        kernel.is_file(),
        "{} printed no kernel path",
        script.display()
    );
    kernel
}
