export declare const NODE_VERSIONS: Record<'22' | '24', string>
export declare function nodeBinary(major: '22' | '24'): string
