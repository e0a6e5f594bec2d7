import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  type CompiledPattern,
  compilePattern,
  execPattern,
  expandTemplate,
  type PatternOptions,
  parseTemplate,
  replaceAll,
  type Template,
  undoubleBackslashes,
} from "./regex.ts";

function compiled(source: string, options?: PatternOptions): CompiledPattern {
  const result = compilePattern(source, options);
  if (!result.ok) assert.fail(`expected ${JSON.stringify(source)} to compile, got: ${result.error}`);
  return result.pattern;
}

function refused(source: string, options?: PatternOptions): string {
  const result = compilePattern(source, options);
  if (result.ok) assert.fail(`expected ${JSON.stringify(source)} to be refused`);
  assert.equal(typeof result.error, "string");
  return result.error;
}

function template(text: string, pattern: string): Template {
  const result = parseTemplate(text, compiled(pattern));
  if (!result.ok) assert.fail(`expected template ${JSON.stringify(text)} to parse, got: ${result.error}`);
  return result.template;
}

function templateError(text: string, pattern: string): string {
  const result = parseTemplate(text, compiled(pattern));
  if (result.ok) assert.fail(`expected template ${JSON.stringify(text)} to be refused`);
  return result.error;
}

/** Matches `input` with `pattern` and fills `text` with the groups. */
function rewrite(pattern: string, text: string, input: string): string {
  const groups = execPattern(compiled(pattern), input);
  if (!groups) assert.fail(`expected ${JSON.stringify(pattern)} to match ${JSON.stringify(input)}`);
  return expandTemplate(template(text, pattern), groups);
}

describe("compilePattern", () => {
  test("compiles a valid RE2 expression without warnings", () => {
    const pattern = compiled("^gcr\\.io/(.*)$");
    assert.equal(pattern.source, "^gcr\\.io/(.*)$");
    assert.deepEqual(pattern.warnings, []);
    assert.equal(pattern.unless, undefined);
    const groups = execPattern(pattern, "gcr.io/distroless/static:nonroot");
    assert.ok(groups);
    assert.equal(groups[0], "gcr.io/distroless/static:nonroot");
    assert.equal(groups[1], "distroless/static:nonroot");
    assert.equal(execPattern(pattern, "gcrxio/distroless/static"), null);
  });

  test("accepts RE2-specific syntax: flags, named groups, character classes", () => {
    assert.ok(execPattern(compiled("(?i)^GCR\\.IO/"), "gcr.io/x"));
    assert.ok(execPattern(compiled("^(?P<registry>[^/]+)/(?<rest>.*)$"), "quay.io/a/b"));
    assert.ok(
      execPattern(
        compiled("^\\d+\\.dkr\\.ecr\\.[[:alnum:]-]+\\.amazonaws\\.com/"),
        "1.dkr.ecr.eu-west-1.amazonaws.com/a",
      ),
    );
  });

  test("an invalid RE2 expression is an error naming the pattern", () => {
    for (const source of ["^(gcr\\.io", "[a-", "a**", "(?P<x>a"]) {
      const error = refused(source);
      assert.match(error, /invalid RE2 expression/);
      assert.ok(error.includes(`"${source}"`), `${error} should quote ${source} as written`);
    }
  });

  test("lookahead and lookbehind are refused with a pointer to spec.exclude", () => {
    for (const source of [
      "^gcr\\.io/(?=distroless)",
      "^(?!internal\\.)(.*)$",
      "(?<=gcr\\.io/)x",
      "(?<!quay)\\.io",
    ]) {
      const error = refused(source);
      assert.match(error, /lookahead or lookbehind/);
      assert.match(error, /spec\.exclude/);
      assert.ok(error.includes(`"${source}"`), `${error} should quote ${source} as written`);
    }
  });

  test("a lookahead anywhere but at the start is refused even with allowLeadingNegativeLookahead", () => {
    const error = refused("^gcr\\.io/(?!distroless)(.*)$", { allowLeadingNegativeLookahead: true });
    assert.match(error, /lookahead or lookbehind/);
    assert.match(error, /spec\.exclude/);
    assert.match(refused("(?!x)^y", { allowLeadingNegativeLookahead: true }), /spec\.exclude/);
    assert.match(refused("^(?=x)y", { allowLeadingNegativeLookahead: true }), /spec\.exclude/);
  });

  test("a backreference is refused", () => {
    for (const source of ["^(a)\\1$", "(gcr)\\.io/\\2(x)"]) {
      const error = refused(source);
      assert.match(error, /backreference/);
      assert.match(error, /spec\.exclude/);
    }
    assert.match(refused("^(a)\\1$", { allowLeadingNegativeLookahead: true }), /backreference/);
  });

  test("doubled backslashes are read as single ones, with a warning", () => {
    // The raw pattern is `gcr\\.io`, as a double-escaping slip in YAML produces.
    const source = "gcr\\\\.io";
    assert.equal(source.length, 8);
    const pattern = compiled(source);
    assert.equal(pattern.source, source);
    assert.equal(pattern.expression, "gcr\\.io");
    assert.ok(execPattern(pattern, "gcr.io/distroless/static"));
    assert.equal(execPattern(pattern, "gcrxio/distroless/static"), null);
    assert.equal(pattern.warnings.length, 1);
    assert.match(pattern.warnings[0]!, /doubled backslash/);
    // Shown as the user wrote it, not JSON-escaped (which would double every backslash again).
    assert.ok(pattern.warnings[0]!.includes('"gcr\\\\.io" as single ones ("gcr\\.io")'), pattern.warnings[0]);
    assert.equal(undoubleBackslashes(source), "gcr\\.io");
    assert.equal(undoubleBackslashes("gcr\\.io"), "gcr\\.io");
  });

  describe("allowLeadingNegativeLookahead (RegistryRewriteRule compatibility)", () => {
    const options = { allowLeadingNegativeLookahead: true };
    const source = "^(?!internal-registry\\.)(.*)$";

    test("^(?!P)REST matches what ^REST matches, except what ^P matches", () => {
      const pattern = compiled(source, options);
      assert.ok(pattern.unless, "the excluded part is compiled separately");
      assert.deepEqual(pattern.warnings, []);
      assert.equal(execPattern(pattern, "internal-registry.company.com/x"), null);
      const groups = execPattern(pattern, "nginx");
      assert.ok(groups);
      assert.equal(groups[0], "nginx");
      assert.equal(groups[1], "nginx");
      // Only a match at the start excludes.
      assert.equal(
        execPattern(pattern, "quay.io/internal-registry.x/y")?.[1],
        "quay.io/internal-registry.x/y",
      );
      // The dot is escaped: "internal-registryX" is not excluded.
      assert.ok(execPattern(pattern, "internal-registryx/y"));
    });

    test("the same pattern is refused without the option", () => {
      assert.match(refused(source), /spec\.exclude/);
    });

    test("a nested lookaround inside the leading one is refused", () => {
      for (const nested of ["^(?!internal(?=-registry))(.*)$", "^(?!a(?!b))(.*)$", "^(?!(?<=x)a)(.*)$"]) {
        const error = refused(nested, options);
        assert.match(error, /nested lookaround/);
        assert.match(error, /spec\.exclude/);
        assert.ok(error.includes(JSON.stringify(nested)));
      }
    });

    test("an invalid excluded part is reported as invalid RE2", () => {
      assert.match(refused("^(?!a**)(.*)$", options), /invalid RE2 expression/);
    });

    test("the leading lookahead takes doubled backslashes too", () => {
      const pattern = compiled("^(?!internal-registry\\\\.)(.*)$", options);
      assert.equal(pattern.warnings.length, 1);
      assert.equal(execPattern(pattern, "internal-registry.corp/x"), null);
      assert.ok(execPattern(pattern, "internal-registryxcorp/x"));
    });

    // Known bug (see the report): groups inside the lookahead are numbered in the
    // original (PCRE/.NET) syntax, but are dropped here, so later groups shift down.
    test("a capturing group inside the leading lookahead keeps the numbering of later groups", {}, () => {
      const pattern = compiled("^(?!(internal|private)-registry\\.)(.*)$", options);
      const parsed = parseTemplate("mirror.local/$2", pattern);
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error);
    });
  });
});

describe("execPattern", () => {
  test("runs in linear time: a catastrophic backtracking pattern finishes and does not match", () => {
    const pattern = compiled("(a+)+$");
    assert.equal(execPattern(pattern, `${"a".repeat(30)}b`), null);
    assert.ok(execPattern(pattern, "a".repeat(30)));
    const nested = compiled("^(a|aa)*c$");
    assert.equal(execPattern(nested, "a".repeat(40)), null);
  });

  test("is unanchored unless the pattern anchors", () => {
    assert.equal(execPattern(compiled("io/"), "gcr.io/x")?.[0], "io/");
    assert.equal(execPattern(compiled("^io/"), "gcr.io/x"), null);
  });
});

describe("parseTemplate and expandTemplate", () => {
  test("$1 and ${1}", () => {
    assert.equal(rewrite("^gcr\\.io/(.*)$", "mirror.local/gcr/$1", "gcr.io/a/b:1"), "mirror.local/gcr/a/b:1");
    assert.equal(rewrite("^gcr\\.io/(.*)$", "mirror.local/${1}x", "gcr.io/a"), "mirror.local/ax");
    assert.deepEqual(template("m/$1", "^(.*)$"), ["m/", 1]);
    assert.deepEqual(template("${1}", "^(.*)$"), [1]);
  });

  test("$0 is the whole match", () => {
    assert.equal(rewrite("gcr\\.io/\\w+", "<$0>", "x.gcr.io/abc/d"), "<gcr.io/abc>");
  });

  test("several groups, in any order and repeated", () => {
    const pattern = "^(\\d+)\\.dkr\\.ecr\\.([^.]+)\\.amazonaws\\.com/(.*)$";
    assert.equal(
      rewrite(pattern, "r/ecr/$1/$2/$3-$1", "123.dkr.ecr.eu-west-1.amazonaws.com/app:1.4"),
      "r/ecr/123/eu-west-1/app:1.4-123",
    );
  });

  test("${name} and $name with (?P<name>…)", () => {
    const pattern = "^(?P<registry>[^/]+)/(?P<path>.*)$";
    assert.equal(
      rewrite(pattern, "mirror.local/${registry}/${path}", "quay.io/a/b:1"),
      "mirror.local/quay.io/a/b:1",
    );
    assert.equal(
      rewrite(pattern, "mirror.local/$registry/$path", "quay.io/a/b:1"),
      "mirror.local/quay.io/a/b:1",
    );
    // A name is the longest run of letters, digits and "_": "$registry" stops at "/" or "-".
    assert.equal(rewrite(pattern, "$registry-x", "quay.io/a"), "quay.io-x");
    assert.deepEqual(template("${path}", pattern), [2]);
  });

  test("(?<name>…) names work too", () => {
    assert.equal(rewrite("^(?<host>[^/]+)/", "${host}", "quay.io/a"), "quay.io");
  });

  test("$$ is a literal dollar", () => {
    assert.deepEqual(template("a$$b", "^(.*)$"), ["a$b"]);
    assert.equal(rewrite("^(.*)$", "$$1=$1", "x"), "$1=x");
    assert.equal(rewrite("^(.*)$", "$$$$", "x"), "$$");
  });

  test("an unknown group number is an error naming the group and the group count", () => {
    const error = templateError("mirror.local/$2", "^(.*)$");
    assert.ok(error.includes(JSON.stringify("mirror.local/$2")), error);
    assert.match(error, /group "2"/);
    assert.match(error, /1 group\(s\)/);
    assert.match(templateError("${3}", "^(a)(b)$"), /group "3"/);
    assert.match(templateError("$1", "^abc$"), /0 group\(s\)/);
  });

  test("an unknown group name is an error naming it", () => {
    const error = templateError("${nope}", "^(?P<yes>.*)$");
    assert.match(error, /group "nope"/);
    assert.match(templateError("$nope", "^(?P<yes>.*)$"), /group "nope"/);
  });

  test("$1_x reads as group 1_x, an error that suggests braces", () => {
    // Go reads `$1_x` as the group named "1_x"; `${1}_x` is what the writer meant.
    const error = templateError("mirror/$1_x", "^(.*)$");
    assert.match(error, /group "1_x"/);
    assert.ok(error.includes("${1}"), `${error} should suggest \${1}`);
  });

  test("$1_x suggests the exact fix ${1}_x", () => {
    assert.ok(templateError("mirror/$1_x", "^(.*)$").includes("${1}_x"));
  });

  test("an unclosed ${ is an error", () => {
    const error = templateError("mirror/${1", "^(.*)$");
    assert.match(error, /unclosed "\$\{"/);
    assert.ok(error.includes(JSON.stringify("mirror/${1")));
  });

  test("a lone $ is an error suggesting $$", () => {
    for (const text of ["mirror/$", "a$-b", "${}"]) {
      const error = templateError(text, "^(.*)$");
      assert.match(error, /lone "\$"/);
      assert.match(error, /\$\$/);
    }
  });

  test("a template without any group is literal text", () => {
    assert.deepEqual(template("mirror.local/fixed:1", "^x$"), ["mirror.local/fixed:1"]);
    assert.deepEqual(template("", "^x$"), []);
    assert.equal(expandTemplate([], ["x"]), "");
  });

  test("a group that did not take part in the match expands to empty", () => {
    assert.equal(rewrite("^(gcr\\.io/)?(.*)$", "[$1][$2]", "nginx"), "[][nginx]");
    assert.equal(rewrite("^(?P<a>x)|(?P<b>y)$", "[${a}][${b}]", "y"), "[][y]");
    assert.equal(expandTemplate([0, "-", 1], ["m", undefined]), "m-");
  });
});

describe("replaceAll (Go's ReplaceAllString)", () => {
  const run = (pattern: string, text: string, input: string, options?: PatternOptions) => {
    const regex = compiled(pattern, options);
    const parsed = parseTemplate(text, regex);
    assert.ok(parsed.ok);
    return replaceAll(regex, parsed.template, input);
  };

  test("undefined when nothing matches, in the fast path and the general one", () => {
    assert.equal(run("^quay\\.io/(.*)$", "m/$1", "gcr.io/x"), undefined);
    assert.equal(run("quay", "m", "gcr.io/x"), undefined);
  });

  test("the `^literal(.*)$` fast path gives what the regular expression gives", () => {
    const pattern = compiled("^quay\\.io/(.*)$");
    assert.equal(pattern.literalThenRest, "quay.io/");
    assert.equal(run("^quay\\.io/(.*)$", "m.corp/$1", "quay.io/a/b:1"), "m.corp/a/b:1");
    assert.equal(run("^quay\\.io/(.*)$", "$0|$1", "quay.io/a"), "quay.io/a|a");
  });

  test("a pattern anchored at the start is replaced once; an unanchored one everywhere", () => {
    assert.equal(compiled("^a").anchoredAtStart, true);
    assert.equal(compiled("^a|b").anchoredAtStart, false);
    assert.equal(compiled("a").anchoredAtStart, false);
    assert.equal(run("^a", "x", "aaa"), "xaa");
    assert.equal(run("a", "x", "aaa"), "xxx");
    assert.equal(run("^a|a", "x", "aaa"), "xxx");
  });

  test("empty matches: replaced between characters, but not right after a match", () => {
    assert.equal(run("x*", "-", "abc"), "-a-b-c-");
    assert.equal(run("a*", "-", "baaac"), "-b-c-");
  });

  test("a leading ^(?!P) keeps images matching P out", () => {
    const options = { allowLeadingNegativeLookahead: true };
    assert.equal(run("^(?!internal\\.)(.*)$", "m/$1", "internal.corp/x", options), undefined);
    assert.equal(run("^(?!internal\\.)(.*)$", "m/$1", "quay.io/x", options), "m/quay.io/x");
  });

  test("a group that did not take part is empty", () => {
    assert.equal(run("(b)(c)?", "[$1$2]", "abcab"), "a[bc]a[b]");
  });
});

describe("pattern limits and programs (docs/webhook.md, Limits)", () => {
  test("a pattern longer than the limit is refused before it is compiled", () => {
    const error = refused(`^(${Array.from({ length: 400 }, (_, i) => `r${i}\\.io`).join("|")})/(.*)$`);
    assert.match(error, /^pattern "\^\(r0\\\.io\|r1.*…" is \d+ characters, more than 2048$/);
  });

  test("more than 32 capture groups are refused", () => {
    const error = refused(`^${"(a)".repeat(33)}`);
    assert.match(error, /has 33 capture groups, more than 32/);
    assert.ok(compiled(`^${"(a)".repeat(32)}`));
  });

  test("a program inflated by counted repetitions is refused", () => {
    const error = refused("^(abcdefgh){900}(ijklmn){900}");
    assert.match(error, /compiles to \d+ RE2 instructions, more than 5000/);
  });

  test("^literal(.*)$ keeps no program; an indexed pattern borrows one; others keep theirs", () => {
    const literal = compiled("^quay\\.io/(.*)$");
    assert.equal(literal.program, undefined);
    assert.equal(literal.literalThenRest, "quay.io/");
    assert.deepEqual([literal.groups, literal.names], [1, {}]);

    const indexed = compiled("^quay\\.io/([a-z]+)/(.*)$");
    assert.equal(indexed.program, undefined);
    assert.deepEqual(
      [...(execPattern(indexed, "quay.io/org/app:1") ?? [])],
      ["quay.io/org/app:1", "org", "app:1"],
    );

    const everywhere = compiled("([a-z]+)\\.io/(.*)$");
    assert.ok(everywhere.program);
    assert.ok(compiled("^quay\\.io/([a-z]+)", { keepProgram: true }).program);
  });

  test("an escaped letter is not taken for the literal shape", () => {
    // `\d` is a class, not a literal "d".
    const pattern = compiled("^registry\\d\\.io/(.*)$");
    assert.equal(pattern.literalThenRest, undefined);
    assert.ok(execPattern(pattern, "registry7.io/x"));
  });

  test("a template cannot refer to inherited object properties as group names", () => {
    const result = parseTemplate("x/$constructor", compiled("^(?P<a>.*)$"));
    assert.equal(result.ok, false);
  });
});
