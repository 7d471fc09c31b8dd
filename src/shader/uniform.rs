//! Typed kernel parameters: each kernel's uniform block is a `#[repr(C)]` Pod struct declared
//! with [`uniform!`], whose field list (names, offsets, scalar kinds) is known at compile time.
//! [`check_layout`] compares it with the WGSL struct that naga parses out of the variant, so a
//! field added on one side only fails a test instead of shifting every later word.
//!
//! Flag bits are named once, in Rust, with [`flags!`]; a variant carries the set
//! ([`super::Variant::with_flags`]) and its WGSL receives them as `const NAME: u32 = …u;`
//! declarations, so the shader never spells a bit value.

use super::Variant;

/// The scalar kind of a uniform field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scalar {
    U32,
    I32,
    F32,
}

/// Rust types that may be uniform fields.
pub trait UniformScalar: bytemuck::Pod {
    const KIND: Scalar;
}
impl UniformScalar for u32 {
    const KIND: Scalar = Scalar::U32;
}
impl UniformScalar for i32 {
    const KIND: Scalar = Scalar::I32;
}
impl UniformScalar for f32 {
    const KIND: Scalar = Scalar::F32;
}

/// One field of a uniform block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub kind: Scalar,
}

/// The layout of a uniform struct: its Rust name, size and fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UniformLayout {
    pub name: &'static str,
    pub size: usize,
    pub fields: &'static [Field],
}

/// A kernel's uniform block (declare it with [`uniform!`]).
pub trait Uniform: bytemuck::Pod {
    const LAYOUT: UniformLayout;
}

/// Declares a `#[repr(C)]` Pod uniform struct of 32-bit scalars and its [`Uniform`] layout:
///
/// ```
/// linseq::uniform! {
///     /// Parameters of the copy kernel.
///     pub struct CopyParams { pub n4: u32 }
/// }
/// ```
#[macro_export]
macro_rules! uniform {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }

        impl $crate::shader::uniform::Uniform for $name {
            const LAYOUT: $crate::shader::uniform::UniformLayout = $crate::shader::uniform::UniformLayout {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                fields: &[$($crate::shader::uniform::Field {
                    name: stringify!($field),
                    offset: std::mem::offset_of!($name, $field),
                    kind: <$ty as $crate::shader::uniform::UniformScalar>::KIND,
                }),*],
            };
        }
    };
}

/// A named set of flag bits, defined once in Rust and handed to the WGSL as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlagSet(pub &'static [(&'static str, u32)]);

impl FlagSet {
    /// The WGSL declarations: one `const NAME: u32 = Vu;` per flag.
    pub fn wgsl(&self) -> String {
        self.0.iter().map(|(n, v)| format!("const {n}: u32 = {v}u;\n")).collect()
    }
}

/// The word of the flags that are on: `bits(&[(has_bias, HAS_BIAS), (init, INIT)])`.
pub fn bits(flags: &[(bool, u32)]) -> u32 {
    flags.iter().filter(|(on, _)| *on).fold(0, |acc, (_, bit)| acc | bit)
}

/// Declares flag constants and their [`FlagSet`]:
/// `flags! { pub mod scan_flags { SOFTPLUS = 1, HAS_BIAS = 2 } }` gives `scan_flags::SOFTPLUS`
/// and `scan_flags::SET`.
#[macro_export]
macro_rules! flags {
    ($(#[$meta:meta])* $vis:vis mod $m:ident { $($name:ident = $val:expr),* $(,)? }) => {
        $(#[$meta])*
        #[allow(non_snake_case, dead_code)]
        $vis mod $m {
            $(pub const $name: u32 = $val;)*
            /// Every flag of the set, as the shader receives them.
            pub const SET: $crate::shader::uniform::FlagSet =
                $crate::shader::uniform::FlagSet(&[$((stringify!($name), $val)),*]);
        }
    };
}

/// Compares a variant's declared uniform layout with the struct its WGSL binds at group 0,
/// binding 0 (as naga parses it). A variant without a uniform binding must declare none.
pub fn check_layout(v: &Variant) -> Result<(), String> {
    let wgsl = v.wgsl().map_err(|e| e.to_string())?;
    let module = naga::front::wgsl::parse_str(&wgsl).map_err(|e| e.emit_to_string(&wgsl))?;
    let uniform = module.global_variables.iter().find(|(_, g)| {
        g.space == naga::AddressSpace::Uniform
            && g.binding.as_ref().is_some_and(|b| b.group == 0 && b.binding == 0)
    });
    let (declared, (_, global)) = match (v.params, uniform) {
        (None, None) => return Ok(()),
        (Some(l), Some(g)) => (l, g),
        (None, Some(_)) => {
            return Err(format!("{}: the WGSL binds a uniform but no Rust layout is declared", v.name))
        }
        (Some(l), None) => {
            return Err(format!("{}: declares {} but its WGSL binds no uniform", v.name, l.name))
        }
    };
    let naga::TypeInner::Struct { members, span } = &module.types[global.ty].inner else {
        return Err(format!("{}: the uniform is not a struct", v.name));
    };
    let wgsl_fields: Vec<(String, usize, Option<Scalar>)> = members
        .iter()
        .map(|m| {
            let kind = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar { kind, width: 4 }) => match kind {
                    naga::ScalarKind::Uint => Some(Scalar::U32),
                    naga::ScalarKind::Sint => Some(Scalar::I32),
                    naga::ScalarKind::Float => Some(Scalar::F32),
                    _ => None,
                },
                _ => None,
            };
            (m.name.clone().unwrap_or_default(), m.offset as usize, kind)
        })
        .collect();
    let rust_fields: Vec<(String, usize, Option<Scalar>)> =
        declared.fields.iter().map(|f| (f.name.to_string(), f.offset, Some(f.kind))).collect();
    if wgsl_fields != rust_fields {
        return Err(format!(
            "{}: Rust {} has fields {rust_fields:?}, the WGSL struct {wgsl_fields:?}",
            v.name, declared.name
        ));
    }
    // The WGSL struct may be padded up to 16 bytes; the Rust one must cover every member.
    if declared.size > *span as usize {
        return Err(format!(
            "{}: Rust {} is {} bytes, the WGSL struct {span}",
            v.name, declared.name, declared.size
        ));
    }
    Ok(())
}
