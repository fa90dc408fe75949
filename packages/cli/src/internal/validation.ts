/**
 * The command-line parser's errors as `tollgate:` lines. @effect/cli reports a bad value without the flag
 * it was given to (`'abc' is not a integer`, `Expected one of the following cases: basic, post`) and a
 * flag without its value as an unknown argument. The flags and their accepted values are in the
 * commands' usage, and the offending value is in the arguments, so each message can name the flag.
 */
import type * as HelpDoc from "@effect/cli/HelpDoc"
import type * as Span from "@effect/cli/HelpDoc/Span"
import type * as Usage from "@effect/cli/Usage"

/** A flag or argument from a command's usage: its names, and what it accepts (`integer`, `basic | post`). */
interface Parameter {
  readonly names: ReadonlyArray<string>
  readonly accepts: string | undefined
}

/** Every flag and argument in `usage` (a root command's usage covers its subcommands). */
export const parameters = (usage: Usage.Usage): ReadonlyArray<Parameter> => {
  switch (usage._tag) {
    case "Empty":
    case "Mixed":
      return []
    case "Named":
      return [{
        names: usage.names,
        accepts: usage.acceptedValues._tag === "Some" ? usage.acceptedValues.value : undefined
      }]
    case "Optional":
    case "Repeated":
      return parameters(usage.usage)
    case "Alternation":
    case "Concat":
      return [...parameters(usage.left), ...parameters(usage.right)]
  }
}

const spanText = (span: Span.Span): string => {
  switch (span._tag) {
    case "Text":
    case "URI":
      return span.value
    case "Highlight":
    case "Strong":
    case "Weak":
      return spanText(span.value)
    case "Sequence":
      return spanText(span.left) + spanText(span.right)
  }
}

/** The paragraphs of a help document as plain text. */
export const paragraphs = (doc: HelpDoc.HelpDoc): ReadonlyArray<string> => {
  switch (doc._tag) {
    case "Empty":
      return []
    case "Header":
    case "Paragraph":
      return [spanText(doc.value)]
    case "DescriptionList":
      return doc.definitions.flatMap(([span, inner]) => [spanText(span), ...paragraphs(inner)])
    case "Enumeration":
      return doc.elements.flatMap(paragraphs)
    case "Sequence":
      return [...paragraphs(doc.left), ...paragraphs(doc.right)]
  }
}

const longest = (names: ReadonlyArray<string>): string =>
  names.reduce((a, b) => (b.length > a.length ? b : a), names[0] ?? "")

/** The flag `value` was given to (`--flag value` or `--flag=value`), when it was. */
const flagBefore = (args: ReadonlyArray<string>, value: string): string | undefined => {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === value && i > 0 && args[i - 1]!.startsWith("-")) return args[i - 1]
    const equals = arg.indexOf("=")
    if (arg.startsWith("-") && equals > 0 && arg.slice(equals + 1) === value) return arg.slice(0, equals)
  }
  return undefined
}

const typeNames: Readonly<Record<string, string>> = { integer: "a whole number", float: "a number", text: "a value" }

/** What a usage's accepted values (`integer`, `basic | post`) mean, in words. */
const inWords = (accepts: string): string =>
  accepts.includes(" | ") ? `one of ${accepts.split(" | ").join(", ")}` : typeNames[accepts] ?? `a ${accepts}`

/**
 * The first argument that is neither a flag, nor a flag's value, nor a command, nor one of `cases`: the
 * positional argument a choice refused.
 */
const refusedPositional = (
  args: ReadonlyArray<string>,
  cases: ReadonlyArray<string>,
  known: ReadonlyArray<Parameter>
): string | undefined =>
  args.find((arg, i) => {
    if (arg.startsWith("-") || cases.includes(arg)) return false
    const previous = args[i - 1]
    if (previous !== undefined && known.some((p) => p.accepts !== undefined && p.names.includes(previous))) {
      return false
    }
    return !known.some((p) => p.names.includes(arg))
  })

const quote = (value: string): string => JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)

const notA = /^'(.*)' is not a (\w+)$/s
const oneOf = /^Expected one of the following cases: (.*)$/s
const unknownArgument = /^Received unknown argument: '(.*)'$/s
const missingArgument = /^Missing argument (<[^>]+>)(?: with choices (.*))?$/s
const invalidSubcommand = /^Invalid subcommand for (\S+) - use (?:one of )?(.*)$/s

/** One message of the parser, in our words, naming the flag or argument it is about. */
const reword = (text: string, args: ReadonlyArray<string>, known: ReadonlyArray<Parameter>): string => {
  let match = notA.exec(text)
  if (match !== null) {
    const [, value = "", type = ""] = match
    const expected = inWords(type)
    const flag = flagBefore(args, value)
    return flag === undefined
      ? `expected ${expected}, got ${quote(value)}`
      : `${flag} expects ${expected}, got ${quote(value)}`
  }
  match = oneOf.exec(text)
  if (match !== null) {
    const cases = match[1] ?? ""
    const parameter = known.find((p) => p.accepts === cases.split(", ").join(" | "))
    if (parameter === undefined) return `expected one of ${cases}`
    const name = longest(parameter.names)
    const given = name.startsWith("-")
      ? args.flatMap((arg, i) =>
        arg === name && i + 1 < args.length
          ? [args[i + 1]!]
          : arg.startsWith(`${name}=`)
          ? [arg.slice(name.length + 1)]
          : []
      ).at(-1)
      : refusedPositional(args, cases.split(", "), known)
    if (given === undefined) return `${name} must be one of ${cases}`
    return name.startsWith("-")
      ? `${name} must be one of ${cases}, got ${quote(given)}`
      : `unknown ${name.replace(/^<|>$/g, "")} ${quote(given)}: expected one of ${cases}`
  }
  match = unknownArgument.exec(text)
  if (match !== null) {
    const arg = match[1] ?? ""
    // `--client-secret=…` names the flag only: what follows `=` may be a secret.
    const name = arg.startsWith("-") ? arg.split("=")[0]! : arg
    const flag = known.find((p) => p.accepts !== undefined && p.names.includes(name))
    if (flag !== undefined) return `${name} needs a value: ${inWords(flag.accepts!)}`
    return arg.startsWith("-")
      ? `unknown flag ${name} (--help lists the flags)`
      : `unexpected argument ${quote(arg)}`
  }
  match = missingArgument.exec(text)
  if (match !== null) {
    const [, name = "", cases] = match
    return `missing argument ${name}${cases === undefined ? "" : `: one of ${cases.split(" | ").join(", ")}`}`
  }
  match = invalidSubcommand.exec(text)
  if (match !== null) return `unknown command: use ${(match[2] ?? "").replace(/'/g, "")}`
  return text
}

/** A parser error as one line (without the `tollgate:` prefix); `usages` are the commands' usages. */
export const describe = (
  error: HelpDoc.HelpDoc,
  args: ReadonlyArray<string>,
  usages: ReadonlyArray<Usage.Usage>
): string => {
  const known = usages.flatMap(parameters)
  const lines = paragraphs(error).map((text) => text.trim()).filter((text) => text.length > 0)
  return lines.length === 0 ? "invalid arguments (--help explains them)" : lines
    .map((text) => reword(text, args, known))
    .join("; ")
}
