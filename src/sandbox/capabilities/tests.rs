use super::*;

const KNOWN: &[&str] = &["cpu", "memory", "disk_usage", "uptime"];

fn parse(entries: &[&str]) -> Result<Option<Capabilities>, String> {
    let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
    Capabilities::parse(&entries, KNOWN)
}

fn only(names: &[&str]) -> ToolSet {
    ToolSet::Only(names.iter().map(|s| s.to_string()).collect())
}

#[test]
fn declarations_parse_into_capabilities() {
    // (entries, tools, shell, llm)
    let cases: &[(&[&str], ToolSet, bool, bool)] = &[
        (&["tools"], ToolSet::All, false, false),
        (&["tools:cpu"], only(&["cpu"]), false, false),
        (
            &["tools:cpu,memory", "shell"],
            only(&["cpu", "memory"]),
            true,
            false,
        ),
        // Repeated `tools:` entries add up.
        (
            &["tools:cpu", "tools:memory"],
            only(&["cpu", "memory"]),
            false,
            false,
        ),
        // `tools` beside a list means every tool.
        (&["tools:cpu", "tools", "llm"], ToolSet::All, false, true),
        (
            &[" tools: cpu , disk_usage ", "llm", "shell"],
            only(&["cpu", "disk_usage"]),
            true,
            true,
        ),
        (&["shell"], only(&[]), true, false),
    ];
    for (entries, tools, shell, llm) in cases {
        let c = parse(entries).expect("parses").expect("declared");
        assert_eq!(&c.tools, tools, "{entries:?}");
        assert_eq!((c.shell, c.llm), (*shell, *llm), "{entries:?}");
    }
}

#[test]
fn an_empty_declaration_declares_nothing() {
    assert_eq!(parse(&[]), Ok(None));
    assert_eq!(Grant::new(None).granted, Capabilities::all());
}

#[test]
fn unknown_words_and_tool_names_are_errors_naming_them() {
    let e = parse(&["tools:cpu,rm_rf"]).unwrap_err();
    assert!(e.contains("\"rm_rf\"") && e.contains("cpu, memory"), "{e}");
    let e = parse(&["network"]).unwrap_err();
    assert!(
        e.contains("\"network\"") && e.contains("`tools:NAME,NAME`"),
        "{e}"
    );
    let e = parse(&["tools:"]).unwrap_err();
    assert!(e.contains("no tool is called \"\""), "{e}");
}

#[test]
fn words_round_trip_and_show_none() {
    for entries in [
        &["tools:cpu,memory", "shell", "llm"][..],
        &["tools"],
        &["llm"],
        &["mcp"],
        &["tools", "mcp:cmdb,prom"],
    ] {
        let c = parse(entries).unwrap().unwrap();
        let words = c.words();
        assert_eq!(
            parse(&words.iter().map(String::as_str).collect::<Vec<_>>()),
            Ok(Some(c))
        );
    }
    assert_eq!(Capabilities::none().to_string(), "none");
    assert_eq!(Capabilities::all().to_string(), "tools shell llm mcp");
}

#[test]
fn the_intersection_keeps_only_what_both_allow() {
    let c = |e: &[&str]| parse(e).unwrap().unwrap();
    // (a, b, a ∩ b)
    let cases = [
        (
            c(&["tools", "shell", "llm"]),
            c(&["tools:cpu"]),
            c(&["tools:cpu"]),
        ),
        (
            c(&["tools:cpu,memory", "shell"]),
            c(&["tools:memory,uptime", "shell", "llm"]),
            c(&["tools:memory", "shell"]),
        ),
        (
            c(&["tools:cpu"]),
            c(&["tools:memory"]),
            Capabilities {
                tools: only(&[]),
                shell: false,
                llm: false,
                mcp: McpSet::Only(Default::default()),
            },
        ),
        (
            c(&["tools", "llm"]),
            Capabilities::all(),
            c(&["tools", "llm"]),
        ),
    ];
    for (a, b, want) in cases {
        assert_eq!(a.intersect(&b), want, "{a} ∩ {b}");
        assert_eq!(b.intersect(&a), want, "{b} ∩ {a}");
    }
}

#[test]
fn a_refusal_names_the_missing_declaration_or_the_policy() {
    let declared = parse(&["tools:cpu"]).unwrap();
    let g = Grant::new(declared);
    assert_eq!(g.tool("cpu"), Ok(()));
    assert_eq!(
        g.tool("memory").unwrap_err(),
        "tool memory: this runner did not declare it (describe capabilities: tools:cpu); \
         add `tools` or `tools:memory`"
    );
    assert!(g.shell().unwrap_err().ends_with("add `shell`"));
    assert!(g.llm().unwrap_err().ends_with("add `llm`"));

    // Declared, but the operator's policy took it away.
    let g = Grant::new(parse(&["tools", "shell"]).unwrap())
        .narrowed(&parse(&["tools:cpu"]).unwrap().unwrap());
    assert_eq!(g.tool("cpu"), Ok(()));
    let e = g.tool("memory").unwrap_err();
    assert!(e.contains("the operator's policy"), "{e}");
    assert!(g.shell().unwrap_err().contains("the operator's policy"));

    // Nothing declared: everything the policy leaves.
    let g = Grant::new(None);
    assert_eq!(
        (g.tool("uptime"), g.shell(), g.llm()),
        (Ok(()), Ok(()), Ok(()))
    );
}
