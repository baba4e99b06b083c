//! The two configuration mechanisms: the address port 0xCF8 with the data ports 0xCFC..0xCFF,
//! and ECAM (one 4 KiB page per function in a memory window).

use acrn_static_config::Bdf;

pub const CONFIG_ADDRESS: u16 = 0xCF8;
pub const CONFIG_DATA: u16 = 0xCFC;

/// A decoded configuration access: which function, which register offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigTarget {
    pub bdf: Bdf,
    pub offset: u16,
}

/// The target of a data-port access at `port` (0xCFC..=0xCFF) with `address` latched in 0xCF8;
/// None when the enable bit is clear or the access would cross the dword.
pub fn port_target(address: u32, port: u16, size: u8) -> Option<ConfigTarget> {
    let byte = port.checked_sub(CONFIG_DATA).filter(|&b| b < 4)?;
    if address & (1 << 31) == 0 || byte as u32 + size as u32 > 4 {
        return None;
    }
    Some(ConfigTarget {
        bdf: Bdf::new(
            (address >> 16) as u8,
            (address >> 11) as u8 & 0x1F,
            (address >> 8) as u8 & 7,
        ),
        // Bits 27:24 reach the extended space as AMD's ECS does; bits 7:2 the dword.
        offset: ((address >> 16) & 0xF00) as u16 | (address & 0xFC) as u16 | byte,
    })
}

/// The target of an ECAM access at `offset` into a window that starts at bus 0; None when it
/// crosses a dword or lies beyond `buses`.
pub fn ecam_target(offset: u64, size: u8, buses: u8) -> Option<ConfigTarget> {
    let bus = offset >> 20;
    if bus >= buses as u64 || !matches!(size, 1 | 2 | 4) || (offset & 3) + size as u64 > 4 {
        return None;
    }
    Some(ConfigTarget {
        bdf: Bdf::new(
            bus as u8,
            (offset >> 15) as u8 & 0x1F,
            (offset >> 12) as u8 & 7,
        ),
        offset: (offset & 0xFFF) as u16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mechanism_decodes_bdf_register_and_byte() {
        let addr = 1 << 31 | 8 << 11 | 0x10; // bus 0, device 8, function 0, register 0x10
        assert_eq!(
            port_target(addr, 0xCFC, 4),
            Some(ConfigTarget {
                bdf: Bdf::new(0, 8, 0),
                offset: 0x10
            })
        );
        assert_eq!(port_target(addr, 0xCFE, 2).unwrap().offset, 0x12);
        assert_eq!(
            port_target(addr | 5 << 8, 0xCFD, 1).unwrap().bdf,
            Bdf::new(0, 8, 5)
        );
        // Disabled, crossing the dword, not a data port.
        assert_eq!(port_target(addr & !(1 << 31), 0xCFC, 4), None);
        assert_eq!(port_target(addr, 0xCFE, 4), None);
        assert_eq!(port_target(addr, 0xCF8, 4), None);
        // AMD's extended register bits.
        assert_eq!(port_target(addr | 1 << 24, 0xCFC, 4).unwrap().offset, 0x110);
    }

    #[test]
    fn ecam_decodes_and_bounds() {
        let off = 3 << 15 | 2 << 12 | 0x44;
        assert_eq!(
            ecam_target(off, 4, 1),
            Some(ConfigTarget {
                bdf: Bdf::new(0, 3, 2),
                offset: 0x44
            })
        );
        assert_eq!(ecam_target(0xFFC, 4, 1).unwrap().offset, 0xFFC);
        assert_eq!(ecam_target(1 << 20, 4, 1), None);
        assert_eq!(ecam_target(0x42, 4, 1), None);
        assert_eq!(ecam_target(0x40, 8, 1), None);
    }
}
