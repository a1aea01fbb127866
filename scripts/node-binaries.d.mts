export declare const NODE_VERSIONS: Record<'20' | '22' | '24', string>
export declare function nodeBinary(major: '20' | '22' | '24'): string
