/**
 * The JSON-RPC 2.0 contract between `banger` and `bangerd`. Newline-delimited JSON over a unix
 * socket: one request or response object per line. Types only; loads nothing.
 */

export interface KernelRef {
  /** A catalog entry by name. */
  kernel?: string
  /** Or direct paths (validated as a triple: the kernel must exist; initrd and modules if given). */
  kernelPath?: string
  initrdPath?: string
  modulesDir?: string
}

export interface ImagePullParams extends KernelRef {
  /** Image reference, Docker rules: `debian:bookworm`, `127.0.0.1:5000/x@sha256:…`. */
  ref: string
  /** Default: from the reference, `debian:bookworm` → `debian-bookworm`. */
  name?: string
  /** Filesystem size in bytes; default max(tree × 1.25, 1 GiB). */
  sizeBytes?: number
  /** `linux/amd64` (default), `linux/arm64`, … */
  platform?: string
  /** Reach this registry over plain HTTP. */
  insecure?: boolean
}

export interface ImageRegisterParams extends KernelRef {
  name: string
  /** An existing ext4 root filesystem; banger records it (managed = false) and never deletes it. */
  rootfsPath: string
}

export type ImageStatus = 'ready' | 'broken'

export interface KernelFiles {
  kernelPath: string
  initrdPath?: string
  modulesDir?: string
}

export interface ImageRecord {
  id: string
  name: string
  /** True when banger built the files and owns them. */
  managed: boolean
  status: ImageStatus
  /** Why the image is broken (e.g. a missing file). */
  problem?: string
  sourceRef?: string
  manifestDigest?: string
  platform?: string
  sizeBytes: number
  /** Directory holding rootfs.ext4 and boot artifacts (managed images). */
  dir?: string
  rootfsPath: string
  kernel?: KernelFiles & { name?: string }
  /** In-image paths written by guest-inject. */
  injectedFiles: string[]
  createdAt: string
}

export interface KernelAddParams extends KernelFiles {
  name: string
  /** Make this the kernel used when a pull names none. */
  default?: boolean
}

export interface KernelRecord extends KernelFiles {
  name: string
  isDefault: boolean
  createdAt: string
}

export interface DaemonStatus {
  pid: number
  version: string
  socketPath: string
  stateDir: string
  cacheDir: string
  uptimeSeconds: number
  images: number
  kernels: number
  pullsInProgress: number
}

export interface NameParams {
  name: string
}

/** Method name → params and result. */
export interface RpcMethods {
  'image.pull': { params: ImagePullParams; result: ImageRecord }
  'image.register': { params: ImageRegisterParams; result: ImageRecord }
  'image.list': { params: Record<string, never>; result: { images: ImageRecord[] } }
  'image.show': { params: NameParams; result: ImageRecord }
  'image.delete': { params: NameParams; result: { deleted: string } }
  'kernel.add': { params: KernelAddParams; result: KernelRecord }
  'kernel.list': { params: Record<string, never>; result: { kernels: KernelRecord[] } }
  'kernel.show': { params: NameParams; result: KernelRecord }
  'kernel.delete': { params: NameParams; result: { deleted: string } }
  'daemon.status': { params: Record<string, never>; result: DaemonStatus }
  'daemon.shutdown': { params: Record<string, never>; result: { stopping: true } }
}

export type RpcMethod = keyof RpcMethods

export type PullStage =
  'resolve' | 'download' | 'flatten' | 'build' | 'ownership' | 'inject' | 'publish' | 'done'

/** Sent as JSON-RPC notifications `pull.progress` while an `image.pull` request runs. */
export type PullProgress =
  | { requestId: number | string; type: 'stage'; stage: PullStage }
  | {
      requestId: number | string
      type: 'layer'
      index: number
      digest: string
      bytes: number
      total: number
      cached: boolean
      done: boolean
    }
  | { requestId: number | string; type: 'warning'; code: string; message: string }

/**
 * Application errors travel as JSON-RPC `error.code = -32000` with `error.data = { code, hint }`;
 * protocol errors use the spec's codes. Match on `data.code`.
 */
export interface RpcErrorData {
  code: string
  hint?: string
}
