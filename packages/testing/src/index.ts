/**
 * @since 0.1.0
 */

/**
 * What every sandbox emulator has in common.
 *
 * @since 0.1.0
 */
export * as Emulator from "./Emulator.js"

/**
 * Fault injection for the sandbox emulators.
 *
 * @since 0.1.0
 */
export * as Faults from "./Faults.js"

/**
 * An emulator of Nomba's API authentication.
 *
 * @since 0.1.0
 */
export * as NombaSandbox from "./NombaSandbox.js"

/**
 * An emulator of the Nora (Formflow) API.
 *
 * @since 0.1.0
 */
export * as NoraSandbox from "./NoraSandbox.js"

/**
 * An emulator of Norce Commerce / Storm OAuth2.
 *
 * @since 0.1.0
 */
export * as NorceSandbox from "./NorceSandbox.js"

/**
 * What an emulator saw, for assertions.
 *
 * @since 0.1.0
 */
export * as Recording from "./Recording.js"

/**
 * All four emulators on loopback or in memory.
 *
 * @since 0.1.0
 */
export * as Sandbox from "./Sandbox.js"

/**
 * An emulator of the Token project APIs.
 *
 * @since 0.1.0
 */
export * as TokenProjectSandbox from "./TokenProjectSandbox.js"

/**
 * @since 0.1.0
 */
export * as FakeTokenSource from "./FakeTokenSource.js"

/**
 * @since 0.1.0
 */
export * as MemoryHttp from "./MemoryHttp.js"

/**
 * @since 0.1.0
 */
export * as RecordingLimiter from "./RecordingLimiter.js"

/**
 * @since 0.1.0
 */
export * as VirtualTime from "./VirtualTime.js"

/**
 * @since 0.1.0
 */
export * as Arbitraries from "./Arbitraries.js"

/**
 * @since 0.1.0
 */
export * as Simulation from "./Simulation.js"
