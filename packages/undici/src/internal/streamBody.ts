import { Cause, Effect, Exit, Fiber, Runtime, Stream } from "effect"
import { Readable } from "node:stream"

/**
 * A request body `Stream` as the Node `Readable` undici writes from: the stream runs in a fiber of the
 * request's runtime, one chunk ahead of the socket (the fiber waits while the readable's buffer is full),
 * and destroying the readable (undici does when the request is aborted) interrupts the fiber.
 */
class StreamReadable<E> extends Readable {
  private readonly readLatch = Effect.unsafeMakeLatch(false)
  private fiber: Fiber.RuntimeFiber<void, E> | undefined

  constructor(runtime: Runtime.Runtime<never>, stream: Stream.Stream<Uint8Array, E>) {
    super()
    this.fiber = Runtime.runFork(runtime)(
      this.readLatch.whenOpen(
        Stream.runForEachChunk(stream, (chunk) =>
          this.readLatch.whenOpen(Effect.sync(() => {
            if (chunk.length === 0) return
            let wantsMore = true
            for (const bytes of chunk) wantsMore = this.push(bytes)
            if (!wantsMore) this.readLatch.unsafeClose()
          })))
      )
    )
    this.fiber.addObserver((exit) => {
      this.fiber = undefined
      if (Exit.isSuccess(exit)) this.push(null)
      else if (!Cause.isInterruptedOnly(exit.cause)) this.destroy(asError(Cause.squash(exit.cause)))
    })
  }

  override _read(): void {
    this.readLatch.unsafeOpen()
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const fiber = this.fiber
    if (fiber === undefined) return callback(error)
    this.fiber = undefined
    Runtime.runFork(Runtime.defaultRuntime)(Fiber.interrupt(fiber)).addObserver(() => callback(error))
  }
}

const asError = (cause: unknown): Error => cause instanceof Error ? cause : new Error(String(cause), { cause })

/** @internal */
export const toReadable = <E>(runtime: Runtime.Runtime<never>, stream: Stream.Stream<Uint8Array, E>): Readable =>
  new StreamReadable(runtime, stream)
