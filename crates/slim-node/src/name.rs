//! SLIM names: `org/namespace/app`, optionally followed by a 128-bit id as a UUID.

use napi_derive::napi;
use slim_datapath::api::{NameId, ProtoName};

use crate::errors::{Code, Error, Result};

/// The parts of a SLIM name.
///
/// @example
/// ```ts
/// const parts: NameParts = parseName('agntcy/ns/alice')
/// console.log(parts.org, parts.namespace, parts.app) // agntcy ns alice
/// ```
/// @group Names
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameParts {
    /// The organisation, the first component.
    pub org: String,
    /// The namespace within the organisation, the second component.
    pub namespace: String,
    /// The application, the third component.
    pub app: String,
    /// The 128-bit instance id as a UUID string, when the name carries one.
    pub id: Option<String>,
}

fn invalid(text: &str, why: &str) -> Error {
    // Long enough to recognise the name, short enough for a log line.
    const SHOWN: usize = 80;
    let shown = if text.chars().count() > SHOWN {
        format!("{}…", text.chars().take(SHOWN).collect::<String>())
    } else {
        text.to_string()
    };
    Error::new(
        Code::InvalidName,
        format!(
            "invalid SLIM name {shown:?}: {why}; expected \"org/namespace/app\" or \"org/namespace/app/<uuid>\""
        ),
    )
}

/// The longest component a name may have. SLIM itself sets no limit, but a name is
/// carried in every message header and becomes part of the app's service id, which
/// upstream caps at 1 024 bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;

fn check_component(text: &str, component: &str) -> Result<()> {
    if component.is_empty() {
        return Err(invalid(text, "a component is empty"));
    }
    if component.len() > MAX_COMPONENT_BYTES {
        return Err(invalid(
            text,
            &format!(
                "a component is {} bytes long, more than the {MAX_COMPONENT_BYTES} allowed",
                component.len()
            ),
        ));
    }
    if component
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(text, "components cannot contain whitespace"));
    }
    Ok(())
}

fn parse_id(text: &str, id: &str) -> Result<u128> {
    let value: u128 = NameId::try_from(id.to_string())
        .map_err(|_| invalid(text, "the id is not a UUID"))?
        .into();
    if NameId::is_reserved_id(value) {
        return Err(invalid(text, "the id is a reserved value"));
    }
    Ok(value)
}

/// Parses `org/ns/app` or `org/ns/app/<uuid>` into the upstream name type.
pub fn parse(text: &str) -> Result<ProtoName> {
    let parts: Vec<&str> = text.split('/').collect();
    let (components, id) = match parts.as_slice() {
        [org, ns, app] => ([*org, *ns, *app], None),
        [org, ns, app, id] => ([*org, *ns, *app], Some(*id)),
        _ => return Err(invalid(text, "it must have three components")),
    };
    for component in components {
        check_component(text, component)?;
    }
    let name = ProtoName::from_strings(components);
    Ok(match id {
        Some(id) => name.with_id(parse_id(text, id)?),
        None => name,
    })
}

/// `org/ns/app`, without the id.
pub fn base(name: &ProtoName) -> String {
    let (org, ns, app) = name.str_components();
    format!("{org}/{ns}/{app}")
}

/// `org/ns/app/<uuid>` when the name has an id, else `org/ns/app`.
pub fn full(name: &ProtoName) -> String {
    match id(name) {
        Some(id) => format!("{}/{id}", base(name)),
        None => base(name),
    }
}

/// The id as a UUID string, or `None` for a name without one.
pub fn id(name: &ProtoName) -> Option<String> {
    name.has_id().then(|| name.string_id())
}

/// The parts of `name`, for JavaScript.
pub fn parts(name: &ProtoName) -> NameParts {
    let (org, namespace, app) = name.str_components();
    NameParts {
        org: org.to_string(),
        namespace: namespace.to_string(),
        app: app.to_string(),
        id: id(name),
    }
}

/// Parses parts back into a name, validating each of them.
pub fn from_parts(parts: &NameParts) -> Result<ProtoName> {
    let mut text = format!("{}/{}/{}", parts.org, parts.namespace, parts.app);
    if let Some(id) = &parts.id {
        text.push('/');
        text.push_str(id);
    }
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_three_components() {
        let name = parse("agntcy/ns/chat").unwrap();
        assert_eq!(base(&name), "agntcy/ns/chat");
        assert_eq!(id(&name), None);
        assert_eq!(full(&name), "agntcy/ns/chat");
    }

    #[test]
    fn parses_an_id_and_round_trips() {
        let text = "org/ns/app/0191d7b0-7c36-7bb3-9f8c-2d6f1c2a9e10";
        let name = parse(text).unwrap();
        assert_eq!(full(&name), text);
        assert_eq!(
            id(&name).as_deref(),
            Some("0191d7b0-7c36-7bb3-9f8c-2d6f1c2a9e10")
        );
    }

    #[test]
    fn limits_component_length_and_quotes_long_names_briefly() {
        let longest = "a".repeat(MAX_COMPONENT_BYTES);
        assert!(parse(&format!("org/ns/{longest}")).is_ok());
        let err = parse(&format!("org/{}/app", "n".repeat(10_000))).unwrap_err();
        assert_eq!(err.code, Code::InvalidName);
        assert!(err.message.contains("10000 bytes long"), "{}", err.message);
        assert!(err.message.len() < 400, "{}", err.message);
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            "org",
            "org/ns",
            "org//app",
            "/ns/app",
            "org/ns/app/",
            "org/ns/app/not-a-uuid",
            "org/ns/a b",
            "a/b/c/d/e",
            "org/ns/app/ffffffff-ffff-ffff-ffff-ffffffffffff",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.code, Code::InvalidName, "{bad:?}");
        }
    }
}
